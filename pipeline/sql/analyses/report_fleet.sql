-- The report: the fleet settings it states (currency, idle and shared policy, carbon price).
select currency, idle_policy, shared_policy, carbon_price_usd_per_tonne from dim_fleet
