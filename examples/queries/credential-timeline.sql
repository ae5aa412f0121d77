-- One credential's timeline: its lifecycle and every call, in order, with its alerts beside
-- the calls that raised them. Replace the id (or use `credwatch explain ID`).
SELECT e.time,
       e.kind,
       e.outcome,
       e.zone,
       e.source_ip,
       e.endpoint,
       e.user_agent,
       a.rule     AS alert,
       a.severity
FROM events e
LEFT JOIN alerts a
  ON a.event_id = e.event_id AND a.credential = e.credential AND a.activity = 'create'
WHERE e.credential = 'AKIAXCTZLHCI3LLP7OGX'
ORDER BY e.time, e.event_id;
