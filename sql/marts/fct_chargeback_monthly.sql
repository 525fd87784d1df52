-- Grain: one row per team x site x site-local calendar month (plus a team __idle__ row per
-- site-month when the idle policy is `separate`, or when the site-month has no team rows at all).
-- Chargeback (OpenCost-like): energy cost is grid kWh (facility kWh x (1 - renewable share)) x
-- the tariff of the minute's local time (int_energy_costed_minutes). Carbon cost is the internal
-- carbon price x tCO2e of operational + embodied carbon. Site capex per month = site capex /
-- (lifetime_years x 12) + the sum of its nodes' capex / (lifetime_years x 12); opex per month =
-- dim_site.opex_usd_per_month. A partial month is pro-rated: both are scaled by the minutes with
-- energy data / the minutes of the local month (DST-aware). Idle energy per dim_fleet.idle_policy:
-- `separate` keeps it (with its energy, carbon, capex and opex) on the __idle__ row; `weighted`
-- spreads it over the site-month's teams by their attributed facility energy (evenly if they
-- have none); `even` spreads it evenly over the teams with rows in the site-month, zero requests
-- or not. Capex and opex are then shared by each row's facility energy after the idle policy
-- (evenly if the site-month has no energy). Per site-month, the rows' facility kWh sum to the
-- metered facility kWh of stg_energy_minutes and their totals to energy + carbon + capex + opex.
-- @column local_month: first day of the calendar month in the site's time zone
-- @column team: owning team, or __idle__ for the idle energy kept separate
-- @column cost_center: the team's cost center (null for __idle__)
-- @column idle_policy: the idle policy that produced the row (dim_fleet.idle_policy)
-- @column requests: requests that finished in the month on the site
-- @column it_energy_kwh: IT energy, kWh, idle share included per the idle policy
-- @column facility_energy_kwh: IT energy x PUE, kWh, idle share included per the idle policy
-- @column idle_facility_energy_kwh: the part of facility_energy_kwh that is idle energy
-- @column energy_cost_usd: grid kWh x tariff of the minute's local time, USD
-- @column operational_kgco2e: operational carbon, kg
-- @column embodied_kgco2e: embodied carbon (node time share), kg
-- @column carbon_cost_usd: (operational + embodied) tCO2e x dim_fleet carbon price, USD
-- @column capex_share_usd: share of the site's pro-rated monthly capex, by facility energy
-- @column opex_share_usd: share of the site's pro-rated monthly opex, by facility energy
-- @column total_usd: energy + carbon + capex + opex shares, USD
-- @column cost_per_1k_requests: total_usd / requests x 1000 (null without requests)
-- @column minutes_present: minutes of the local month with energy data for the site
-- @column minutes_in_month: minutes in the site-local calendar month
with

costed as (
    select * from int_energy_costed_minutes
),

sites as (
    select * from dim_site
),

nodes as (
    select * from dim_node
),

teams as (
    select * from dim_team
),

fleet as (
    select carbon_price_usd_per_tonne, idle_policy from dim_fleet
),

team_months as (
    select
        site_id,
        local_month,
        team,
        bool_or(is_idle) as is_idle,
        cast(sum(requests) as bigint) as requests,
        sum(it_energy_kwh) as it_energy_kwh,
        sum(facility_energy_kwh) as facility_energy_kwh,
        sum(energy_cost_usd) as energy_cost_usd,
        sum(operational_kgco2e) as operational_kgco2e,
        sum(embodied_kgco2e) as embodied_kgco2e
    from costed
    group by site_id, local_month, team
),

attributed as (
    select * from team_months where not is_idle
),

idle as (
    select * from team_months where is_idle
),

attributed_weights as (
    select
        a.*,
        f.idle_policy,
        case
            when f.idle_policy = 'separate' then 0.0
            when f.idle_policy = 'weighted'
                and sum(a.facility_energy_kwh) over site_month > 0
                then a.facility_energy_kwh / sum(a.facility_energy_kwh) over site_month
            else 1.0 / count(*) over site_month
        end as spread
    from attributed as a
    cross join fleet as f
    window site_month as (partition by a.site_id, a.local_month)
),

teams_with_idle as (
    -- under `separate` the spread is zero: the teams keep their attributed amounts only
    select
        a.site_id,
        a.local_month,
        a.team,
        a.idle_policy,
        a.requests,
        a.it_energy_kwh + a.spread * coalesce(i.it_energy_kwh, 0) as it_energy_kwh,
        a.facility_energy_kwh + a.spread * coalesce(i.facility_energy_kwh, 0) as facility_energy_kwh,
        a.spread * coalesce(i.facility_energy_kwh, 0) as idle_facility_energy_kwh,
        a.energy_cost_usd + a.spread * coalesce(i.energy_cost_usd, 0) as energy_cost_usd,
        a.operational_kgco2e + a.spread * coalesce(i.operational_kgco2e, 0) as operational_kgco2e,
        a.embodied_kgco2e + a.spread * coalesce(i.embodied_kgco2e, 0) as embodied_kgco2e
    from attributed_weights as a
    left join idle as i
        on a.site_id = i.site_id
        and a.local_month = i.local_month
),

idle_rows as (
    -- the idle row stays when the policy keeps it separate, or nobody is there to carry it
    select
        i.site_id,
        i.local_month,
        i.team,
        f.idle_policy,
        i.requests,
        i.it_energy_kwh,
        i.facility_energy_kwh,
        i.facility_energy_kwh as idle_facility_energy_kwh,
        i.energy_cost_usd,
        i.operational_kgco2e,
        i.embodied_kgco2e
    from idle as i
    cross join fleet as f
    where f.idle_policy = 'separate'
        or not exists (
            select 1
            from attributed as a
            where a.site_id = i.site_id and a.local_month = i.local_month
        )
),

allocated as (
    select * from teams_with_idle
    union all by name
    select * from idle_rows
),

site_monthly_capex as (
    select
        s.site_id,
        s.capex_usd / (s.lifetime_years * 12)
        + coalesce(sum(n.capex_usd / (n.lifetime_years * 12)), 0) as capex_usd_per_month,
        any_value(s.opex_usd_per_month) as opex_usd_per_month,
        any_value(s.timezone) as timezone
    from sites as s
    left join nodes as n using (site_id)
    group by s.site_id, s.capex_usd, s.lifetime_years
),

site_months as (
    select
        site_id,
        local_month,
        count(distinct window_start) as minutes_present
    from costed
    group by site_id, local_month
),

site_month_costs as (
    select
        m.site_id,
        m.local_month,
        m.minutes_present,
        cast(
            (
                epoch(timezone(c.timezone, cast(m.local_month + interval 1 month as timestamp)))
                - epoch(timezone(c.timezone, cast(m.local_month as timestamp)))
            ) / 60 as bigint
        ) as minutes_in_month,
        c.capex_usd_per_month,
        c.opex_usd_per_month
    from site_months as m
    join site_monthly_capex as c using (site_id)
),

site_month_prorated as (
    select
        *,
        capex_usd_per_month * minutes_present / minutes_in_month as capex_usd,
        opex_usd_per_month * minutes_present / minutes_in_month as opex_usd
    from site_month_costs
),

shared as (
    select
        a.*,
        case
            when sum(a.facility_energy_kwh) over site_month > 0
                then a.facility_energy_kwh / sum(a.facility_energy_kwh) over site_month
            else 1.0 / count(*) over site_month
        end as cost_share
    from allocated as a
    window site_month as (partition by a.site_id, a.local_month)
),

costed_rows as (
    select
        s.*,
        (s.operational_kgco2e + s.embodied_kgco2e) / 1000
        * f.carbon_price_usd_per_tonne as carbon_cost_usd,
        p.capex_usd * s.cost_share as capex_share_usd,
        p.opex_usd * s.cost_share as opex_share_usd,
        p.minutes_present,
        p.minutes_in_month
    from shared as s
    cross join fleet as f
    join site_month_prorated as p using (site_id, local_month)
),

final as (
    select
        r.site_id,
        r.local_month,
        r.team,
        t.cost_center,
        r.idle_policy,
        r.requests,
        r.it_energy_kwh,
        r.facility_energy_kwh,
        r.idle_facility_energy_kwh,
        r.energy_cost_usd,
        r.operational_kgco2e,
        r.embodied_kgco2e,
        r.carbon_cost_usd,
        r.capex_share_usd,
        r.opex_share_usd,
        r.energy_cost_usd + r.carbon_cost_usd + r.capex_share_usd + r.opex_share_usd as total_usd,
        (r.energy_cost_usd + r.carbon_cost_usd + r.capex_share_usd + r.opex_share_usd)
        / nullif(r.requests, 0) * 1000 as cost_per_1k_requests,
        r.minutes_present,
        r.minutes_in_month
    from costed_rows as r
    left join teams as t using (team)
    order by r.site_id, r.local_month, r.team
)

select * from final
