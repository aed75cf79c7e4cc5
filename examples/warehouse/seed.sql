-- Demo data for examples/warehouse/pipeline.yaml (MariaDB): 12 campaigns, 10 active,
-- 20,000 orders with awkward values (NULLs, empty strings, quotes, commas, newlines,
-- non-ASCII text).
DROP TABLE IF EXISTS orders;
DROP TABLE IF EXISTS campaigns;
CREATE TABLE campaigns (
  campaign_id VARCHAR(32) PRIMARY KEY,
  active TINYINT(1) NOT NULL
);
CREATE TABLE orders (
  order_id BIGINT UNSIGNED PRIMARY KEY,
  campaign_id VARCHAR(32) NOT NULL,
  customer VARCHAR(80) NULL,
  amount DECIMAL(12,2) NOT NULL,
  currency CHAR(3) NOT NULL,
  ordered_at DATETIME(3) NOT NULL,
  note TEXT NULL,
  KEY (campaign_id)
);
INSERT INTO campaigns VALUES
  ('spring-26', 1), ('summer-26', 1), ('autumn-26', 1), ('winter-26', 1),
  ('black-friday', 1), ('cyber-monday', 1), ('o''brien; DROP TABLE orders; --', 1),
  ('newsletter', 1), ('referral', 1), ('loyalty', 1), ('retired-1', 0), ('retired-2', 0);
INSERT INTO orders
SELECT seq,
       ELT(1 + seq % 12, 'spring-26', 'summer-26', 'autumn-26', 'winter-26', 'black-friday',
           'cyber-monday', 'o''brien; DROP TABLE orders; --', 'newsletter', 'referral',
           'loyalty', 'retired-1', 'retired-2'),
       CASE seq % 7 WHEN 0 THEN NULL WHEN 1 THEN '' WHEN 2 THEN 'Zoë "Z" Ünal'
                    WHEN 3 THEN 'Smith, John' ELSE CONCAT('customer-', seq) END,
       (seq * 37 % 100000) / 100,
       ELT(1 + seq % 3, 'EUR', 'USD', 'GBP'),
       TIMESTAMP('2026-11-01 00:00:00.000') + INTERVAL seq * 61 SECOND,
       CASE seq % 5 WHEN 0 THEN NULL WHEN 1 THEN '' WHEN 2 THEN 'line one\nline two'
                    ELSE 'plain note' END
FROM seq_1_to_20000;
