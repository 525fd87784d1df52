-- The report: the site-local months the chargeback covers.
select distinct local_month as month from fct_chargeback_monthly order by month
