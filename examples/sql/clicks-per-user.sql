-- Clicks per user every 10 seconds of event time, from the `clicks` table of
-- the catalog (examples/sql/clicks.sql) into a topic declared here.
CREATE TABLE clicks_per_user (
    user_id BIGINT,
    window_end TIMESTAMP(3),
    clicks BIGINT,
    referred BIGINT
) WITH (
    'connector' = 'kafka',
    'topic' = 'clicks-per-user',
    'properties.bootstrap.servers' = 'localhost:9092',
    'format' = 'json',
    'sink.delivery-guarantee' = 'exactly-once'
);

INSERT INTO clicks_per_user
SELECT user_id, window_end, COUNT(*), COUNT(*) FILTER (WHERE referrer IS NOT NULL)
FROM TABLE(TUMBLE(TABLE clicks, DESCRIPTOR(click_time), INTERVAL '10' SECOND))
WHERE url NOT LIKE '/static/%'
GROUP BY user_id, window_start, window_end;
