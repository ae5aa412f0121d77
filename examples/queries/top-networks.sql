-- Credentials seen from the most distinct networks: shared, leaked or roaming keys.
SELECT credential,
       count(DISTINCT network) AS networks,
       count(DISTINCT zone)    AS zones,
       count(*)                AS events
FROM events
WHERE kind = 'access'
GROUP BY credential
ORDER BY networks DESC, credential
LIMIT 20;
