-- Nexmark q3 (local item suggestion): the sellers in Oregon, Idaho or
-- California of auctions in category 10, with each such auction's id: a
-- regular join of auctions with persons on the seller.
CREATE TABLE q3_out (name STRING, city STRING, state STRING, id BIGINT) WITH ('connector' = 'blackhole');

INSERT INTO q3_out
SELECT P.name, P.city, P.state, A.id
FROM auction AS A INNER JOIN person AS P ON A.seller = P.id
WHERE A.category = 10 AND (P.state = 'OR' OR P.state = 'ID' OR P.state = 'CA');
