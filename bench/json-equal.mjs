// json-equal.mjs — exit 0 when two files hold the same JSON value (object key order
// ignored, numbers compared as parsed), 1 when they differ, 2 when one is not JSON.
// Used by the benchmarks to check each engine's output outside the timed run.
//   node json-equal.mjs EXPECTED.json ACTUAL.json
import { readFileSync } from 'node:fs';

function load(path) {
  try {
    return JSON.parse(readFileSync(path, 'utf8'));
  } catch (e) {
    process.stderr.write(`json-equal: ${path}: ${e.message}\n`);
    process.exit(2);
  }
}

// Iterative walk: a 100,000-element array must not cost a deep recursion or a
// canonical re-serialisation of both documents.
function equal(a, b) {
  const stack = [[a, b]];
  while (stack.length) {
    const [x, y] = stack.pop();
    if (x === y) continue;
    if (x === null || y === null || typeof x !== 'object' || typeof y !== 'object') return false;
    if (Array.isArray(x) !== Array.isArray(y)) return false;
    const kx = Object.keys(x);
    if (kx.length !== Object.keys(y).length) return false;
    for (const k of kx) {
      if (!Object.prototype.hasOwnProperty.call(y, k)) return false;
      stack.push([x[k], y[k]]);
    }
  }
  return true;
}

if (process.argv.length !== 4) {
  process.stderr.write('usage: node json-equal.mjs EXPECTED.json ACTUAL.json\n');
  process.exit(2);
}
process.exit(equal(load(process.argv[2]), load(process.argv[3])) ? 0 : 1);
