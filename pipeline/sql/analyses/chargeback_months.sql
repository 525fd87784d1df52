-- The site-local months the chargeback covers (the report's period list, the demo's exports).
select distinct local_month as month from fct_chargeback_monthly order by month
