-- Nexmark q20 (expand bid with auction): each bid on an auction of category
-- 10, with its auction's columns: a regular join of bids with auctions.
-- Nexmark's q20 also carries `extra` and `description`, which weir's tables
-- lack.
CREATE TABLE q20_out (
  auction BIGINT, bidder BIGINT, price BIGINT, channel STRING, url STRING,
  bid_date_time TIMESTAMP(3), item_name STRING, initial_bid BIGINT, reserve BIGINT,
  auction_date_time TIMESTAMP(3), expires TIMESTAMP(3), seller BIGINT, category BIGINT
) WITH ('connector' = 'blackhole');

INSERT INTO q20_out
SELECT auction, bidder, price, channel, url, B.date_time, item_name, initial_bid, reserve,
  A.date_time, expires, seller, category
FROM bid AS B INNER JOIN auction AS A ON B.auction = A.id
WHERE A.category = 10;
