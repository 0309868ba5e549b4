-- Nexmark q7 (highest bid): the bids at the highest price of each 10 s
-- window: a regular join of the bids with each window's highest price.
CREATE TABLE q7_out (auction BIGINT, price BIGINT, bidder BIGINT, date_time TIMESTAMP(3), url STRING) WITH ('connector' = 'blackhole');

INSERT INTO q7_out
SELECT B.auction, B.price, B.bidder, B.date_time, B.url
from bid B
JOIN (
  SELECT MAX(price) AS maxprice, window_end as date_time
  FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(date_time), INTERVAL '10' SECOND))
  GROUP BY window_start, window_end
) B1
ON B.price = B1.maxprice
WHERE B.date_time BETWEEN B1.date_time - INTERVAL '10' SECOND AND B1.date_time;
