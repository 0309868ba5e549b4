-- Nexmark q18 (find last bid): each bidder's last bid on each auction, a
-- deduplication that keeps the latest row (ROW_NUMBER() ... DESC, rn <= 1):
-- an updating result. Nexmark's q18 also carries `extra`, which weir's bids
-- lack.
CREATE TABLE q18_out (
  auction BIGINT, bidder BIGINT, price BIGINT, channel STRING, url STRING, date_time TIMESTAMP(3)
) WITH ('connector' = 'blackhole');

INSERT INTO q18_out
SELECT auction, bidder, price, channel, url, date_time
FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY bidder, auction ORDER BY date_time DESC) AS rank_number
      FROM bid)
WHERE rank_number <= 1;
