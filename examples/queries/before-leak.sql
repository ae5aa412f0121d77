-- Which endpoints and networks each leaked credential touched in the 24 hours before its
-- leak report: what an attacker may already have done, and from where.
SELECT c.credential,
       c.leaked_at,
       c.leak_source,
       e.endpoint,
       e.zone,
       e.network,
       count(*)    AS calls,
       min(e.time) AS first,
       max(e.time) AS last
FROM credentials c
JOIN events e ON e.credential = c.credential
WHERE c.leaked_at IS NOT NULL
  AND e.kind = 'access'
  AND e.time BETWEEN c.leaked_at - INTERVAL '24 hours' AND c.leaked_at
GROUP BY c.credential, c.leaked_at, c.leak_source, e.endpoint, e.zone, e.network
ORDER BY c.credential, first;
