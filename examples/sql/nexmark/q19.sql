-- Nexmark q19 (auction top-10 price): the ten highest bids of each auction,
-- with their rank: a top-N, whose result is each rank's changes.
CREATE TABLE q19_out (
  auction BIGINT, bidder BIGINT, price BIGINT, channel STRING, url STRING, date_time TIMESTAMP(3),
  rank_number BIGINT
) WITH ('connector' = 'blackhole');

INSERT INTO q19_out
SELECT * FROM
  (SELECT *, ROW_NUMBER() OVER (PARTITION BY auction ORDER BY price DESC) AS rank_number FROM bid)
WHERE rank_number <= 10;
