-- Credentials used from the internet in the last 7 days of the archive, with where from.
-- Filtering on `date` reads only those days' directories.
SELECT credential,
       count(*)                   AS calls,
       count(DISTINCT network)    AS networks,
       min(time)                  AS first,
       max(time)                  AS last,
       array_agg(DISTINCT source_ip) AS addresses
FROM events
WHERE zone = 'internet'
  AND kind = 'access'
  AND date >= to_char(
        (SELECT max(time) FROM events) - INTERVAL '7 days', '%Y-%m-%d')
GROUP BY credential
ORDER BY calls DESC
LIMIT 50;
