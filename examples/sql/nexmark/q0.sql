-- Nexmark q0 (pass-through): every bid, unchanged.
CREATE TABLE q0_out (auction BIGINT, bidder BIGINT, price BIGINT, date_time TIMESTAMP(3))
WITH ('connector' = 'blackhole');

INSERT INTO q0_out SELECT auction, bidder, price, date_time FROM bid;
