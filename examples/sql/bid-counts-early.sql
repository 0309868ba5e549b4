-- The bids per auction per 10-second window of bid-counts.sql, fired early:
-- an auction's row of a window is updated after every 5th of its bids and
-- every second for the auctions that got bids since, then finished when the
-- watermark passes the window's end. The result is a changelog (+I, -U, +U),
-- for a sink that takes updates (print, or upsert-kafka keyed by auction and
-- window_start).
SET 'table.exec.emit.early-fire.enabled' = 'true';
SET 'table.exec.emit.early-fire.count' = '5';
SET 'table.exec.emit.early-fire.delay' = '1 s';

CREATE TABLE bid_counts (
  auction BIGINT, window_start TIMESTAMP(3), window_end TIMESTAMP(3),
  bids BIGINT, top_price BIGINT, app_bids BIGINT
) WITH ('connector' = 'print');

INSERT INTO bid_counts
SELECT auction, window_start, window_end, COUNT(*), MAX(price),
       COUNT(*) FILTER (WHERE channel = 'Apple')
FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(date_time), INTERVAL '10' SECOND))
GROUP BY auction, window_start, window_end;
