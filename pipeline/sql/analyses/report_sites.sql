-- The report: every site with its city, country and design PUE.
select site_id, city, country, design_pue from dim_site order by site_id
