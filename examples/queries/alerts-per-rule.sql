-- How many alerts each rule raised per day, and how many repeats suppression folded into them.
SELECT date,
       rule,
       severity,
       count(*) FILTER (WHERE activity = 'create')      AS alerts,
       coalesce(sum(count - 1) FILTER (WHERE activity = 'update'), 0) AS folded_repeats
FROM alerts
GROUP BY date, rule, severity
ORDER BY date, alerts DESC, rule;
