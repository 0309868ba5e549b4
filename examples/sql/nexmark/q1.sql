-- Nexmark q1 (currency conversion): bid prices in euro.
CREATE TABLE q1_out (auction BIGINT, bidder BIGINT, price DOUBLE, date_time TIMESTAMP(3))
WITH ('connector' = 'blackhole');

INSERT INTO q1_out SELECT auction, bidder, 0.908 * price AS price, date_time FROM bid;
