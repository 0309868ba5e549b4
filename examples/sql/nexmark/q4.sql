-- Nexmark q4 (average price per category): the average of the winning
-- bids (each auction's highest bid while it was open) per category: an
-- updating aggregate over another's updating result.
CREATE TABLE q4_out (category BIGINT, final BIGINT) WITH ('connector' = 'blackhole');

INSERT INTO q4_out
SELECT Q.category, AVG(Q.final)
FROM (
    SELECT MAX(B.price) AS final, A.category
    FROM auction A, bid B
    WHERE A.id = B.auction AND B.date_time BETWEEN A.date_time AND A.expires
    GROUP BY A.id, A.category
) Q
GROUP BY Q.category;
