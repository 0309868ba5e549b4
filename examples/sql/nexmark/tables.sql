-- The Nexmark tables over the built-in generator (connector 'nexmark'): the
-- same events as the typed `nexmark` pipeline. Event time is date_time, up to
-- 4 s out of order. Change 'events.num' for a longer or an unbounded run
-- (without it the generator never stops).
CREATE TABLE person (
  id BIGINT,
  name STRING,
  email_address STRING,
  credit_card STRING,
  city STRING,
  state STRING,
  date_time TIMESTAMP(3),
  WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND
) WITH ('connector' = 'nexmark', 'kind' = 'person', 'events.num' = '100000');

CREATE TABLE auction (
  id BIGINT,
  item_name STRING,
  initial_bid BIGINT,
  reserve BIGINT,
  date_time TIMESTAMP(3),
  expires TIMESTAMP(3),
  seller BIGINT,
  category BIGINT,
  WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND
) WITH ('connector' = 'nexmark', 'kind' = 'auction', 'events.num' = '100000');

CREATE TABLE bid (
  auction BIGINT,
  bidder BIGINT,
  price BIGINT,
  channel STRING,
  url STRING,
  date_time TIMESTAMP(3),
  WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND
) WITH ('connector' = 'nexmark', 'kind' = 'bid', 'events.num' = '100000');
