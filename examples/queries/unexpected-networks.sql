-- Calls from outside the address ranges a team expects, with the zone credwatch's
-- configuration gives each address (zone_of uses the zones of --config).
SELECT credential,
       source_ip,
       zone_of(source_ip) AS zone_now,
       zone               AS zone_then,
       count(*)           AS calls
FROM events
WHERE kind = 'access'
  AND source_ip IS NOT NULL
  AND NOT ip_in_cidr(source_ip, '10.0.0.0/8')
GROUP BY credential, source_ip, zone_of(source_ip), zone
ORDER BY calls DESC
LIMIT 50;
