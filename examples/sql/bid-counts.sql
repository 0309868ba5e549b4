-- Bids per auction per 10-second tumbling window of event time, with the
-- highest price and how many bids came from the app channel.
CREATE TABLE bid_counts (
  auction BIGINT, window_start TIMESTAMP(3), window_end TIMESTAMP(3),
  bids BIGINT, top_price BIGINT, app_bids BIGINT
) WITH ('connector' = 'print');

INSERT INTO bid_counts
SELECT auction, window_start, window_end, COUNT(*), MAX(price),
       COUNT(*) FILTER (WHERE channel = 'Apple')
FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(date_time), INTERVAL '10' SECOND))
GROUP BY auction, window_start, window_end;
