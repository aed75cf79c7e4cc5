// run-sfn.mjs — runs one ASL definition on the reference peer, aws-local-stepfunctions,
// with the same CLI shape as `etlrun run` so the benchmark scripts can swap engines:
//   node peer/run-sfn.mjs DEFINITION.json [--input JSON] [--input-file F]
// Prints the execution's output JSON on stdout. Exit 0 on success, 1 when the execution
// fails, 2 on a usage or definition error (the same codes as etlrun).
// Waits are real: no waitTimeOverrides are passed, so a Wait of 1 s sleeps 1 s.
import { readFileSync } from 'node:fs';
import { StateMachine } from 'aws-local-stepfunctions';

function usage(msg) {
  process.stderr.write(`run-sfn: ${msg}\n` +
    'usage: node run-sfn.mjs DEFINITION.json [--input JSON] [--input-file F]\n');
  process.exit(2);
}

const args = process.argv.slice(2);
let defPath = null;
let inputText = '{}';
for (let i = 0; i < args.length; i++) {
  const a = args[i];
  if (a === '--input' || a === '--input-file') {
    if (i + 1 >= args.length) usage(`${a} needs a value`);
    const v = args[++i];
    try {
      inputText = a === '--input' ? v : readFileSync(v, 'utf8');
    } catch (e) {
      usage(`cannot read ${v}: ${e.message}`);
    }
  } else if (a.startsWith('--')) {
    usage(`unknown option ${a}`);
  } else if (defPath === null) {
    defPath = a;
  } else {
    usage(`unexpected argument ${a}`);
  }
}
if (defPath === null) usage('missing DEFINITION.json');

let definition;
let input;
try {
  definition = JSON.parse(readFileSync(defPath, 'utf8'));
} catch (e) {
  usage(`cannot load definition ${defPath}: ${e.message}`);
}
try {
  input = JSON.parse(inputText);
} catch (e) {
  usage(`input is not JSON: ${e.message}`);
}

let machine;
try {
  // Full validation stays on (the default): the benchmark definitions are valid ASL,
  // and validation is a one-off cost outside the measured loop anyway.
  machine = new StateMachine(definition);
} catch (e) {
  usage(`invalid definition: ${e.message}`);
}

try {
  const result = await machine.run(input).result;
  process.stdout.write(JSON.stringify(result) + '\n');
  process.exitCode = 0;
} catch (e) {
  // Execution failures carry the ASL error name (e.g. States.Runtime) and a cause.
  process.stderr.write(`run-sfn: execution failed: ${e.name}: ${e.message}\n`);
  process.exitCode = 1;
}
