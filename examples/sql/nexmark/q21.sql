-- Nexmark q21 (add channel id): bids from the four known channels, or whose
-- URL names a channel id, with that id.
CREATE TABLE q21_out (
  auction BIGINT, bidder BIGINT, price DOUBLE, channel STRING, channel_id STRING
) WITH ('connector' = 'blackhole');

INSERT INTO q21_out
SELECT auction, bidder, 0.908 * price AS price, channel,
  CASE
    WHEN LOWER(channel) = 'apple' THEN '0'
    WHEN LOWER(channel) = 'google' THEN '1'
    WHEN LOWER(channel) = 'facebook' THEN '2'
    WHEN LOWER(channel) = 'baidu' THEN '3'
    ELSE REGEXP_EXTRACT(url, '(&|^)channel_id=([^&]*)', 2)
  END AS channel_id
FROM bid
WHERE REGEXP_EXTRACT(url, '(&|^)channel_id=([^&]*)', 2) IS NOT NULL
   OR LOWER(channel) IN ('apple', 'google', 'facebook', 'baidu');
