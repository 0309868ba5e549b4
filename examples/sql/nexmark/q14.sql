-- Nexmark q14 (calculation): bids in euro within a price range, with the part
-- of the day they came in. Nexmark's q14 also counts the 'c's of the bid's
-- `extra` column with a user-defined function; weir's bids have no `extra`.
CREATE TABLE q14_out (
  auction BIGINT, bidder BIGINT, price DOUBLE, bid_time_type STRING, date_time TIMESTAMP(3)
) WITH ('connector' = 'blackhole');

INSERT INTO q14_out
SELECT auction, bidder, 0.908 * price AS price,
  CASE
    WHEN HOUR(date_time) >= 8 AND HOUR(date_time) <= 18 THEN 'dayTime'
    WHEN HOUR(date_time) <= 6 OR HOUR(date_time) >= 20 THEN 'nightTime'
    ELSE 'otherTime'
  END AS bid_time_type,
  date_time
FROM bid
WHERE 0.908 * price > 1000000 AND 0.908 * price < 50000000;
