-- The clicks topic in the data dictionary: register it with
--   weir catalog add -f examples/sql/clicks.sql
CREATE TABLE clicks (
    user_id BIGINT NOT NULL COMMENT 'who clicked',
    url STRING,
    referrer STRING,
    click_time TIMESTAMP(3) COMMENT 'when, in the browser',
    WATERMARK FOR click_time AS click_time - INTERVAL '5' SECOND
) COMMENT 'page clicks from the web front end' WITH (
    'connector' = 'kafka',
    'topic' = 'clicks',
    'properties.bootstrap.servers' = 'localhost:9092',
    'scan.startup.mode' = 'earliest-offset',
    'format' = 'json'
);
