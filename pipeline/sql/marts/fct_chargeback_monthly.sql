-- Grain: one row per team x site x site-local calendar month, plus a team __idle__ row per
-- site-month when the idle policy is `separate` and a team __shared__ row when the shared
-- policy is (either also when the site-month has no team rows at all).
-- Chargeback (OpenCost-like) that reconciles with the facility meter: its rows are those of
-- int_energy_costed_minutes, whose facility energy per site-minute is the meter's (node rows,
-- plus the shared infrastructure energy: metered IT load no node reported and its overhead), or
-- node IT x design PUE where no meter counts (design_pue_facility_energy_kwh, shown apart).
-- Energy cost is grid kWh (facility kWh x (1 - renewable share)) x the tariff of the minute's
-- local time. Carbon cost is the internal carbon price x tCO2e of operational + embodied
-- carbon. Site capex per month = site capex / (lifetime_years x 12) + the sum of its nodes'
-- capex / (lifetime_years x 12); opex per month = dim_site.opex_usd_per_month. A partial month
-- is pro-rated: both are scaled by the minutes with energy data / the minutes of the local
-- month (DST-aware). Idle energy per dim_fleet.idle_policy and shared energy per
-- dim_fleet.shared_policy, each on its own: `separate` keeps the pool (with its energy,
-- carbon, capex and opex) on its own row; `weighted` spreads it over the site-month's teams by
-- their attributed facility energy (evenly if they have none); `even` spreads it evenly over
-- the teams with rows in the site-month, zero requests or not. A pool goes to the teams only,
-- never to the other pool's row, so the two policies compose without counting anything twice.
-- Capex and opex are then shared by each row's facility energy after both policies (evenly if
-- the site-month has no energy). Per site-month, the rows' facility kWh sum to the meter's
-- (int_site_meter_minutes.billed_facility_energy_wh) and their totals to energy + carbon +
-- capex + opex.
-- @column local_month: first day of the calendar month in the site's time zone
-- @column team: owning team, __idle__ for the idle energy or __shared__ for the shared infrastructure energy kept separate
-- @column cost_center: the team's cost center (null for __idle__ and __shared__)
-- @column idle_policy: the idle policy that produced the row (dim_fleet.idle_policy)
-- @column shared_policy: the shared policy that produced the row (dim_fleet.shared_policy)
-- @column requests: requests that finished in the month on the site
-- @column it_energy_kwh: IT energy, kWh, idle and shared shares included per the policies
-- @column facility_energy_kwh: IT energy x PUE, kWh, idle and shared shares included per the policies
-- @column idle_facility_energy_kwh: the part of facility_energy_kwh that is idle energy
-- @column shared_facility_energy_kwh: the part of facility_energy_kwh that is shared infrastructure energy (metered IT no node reported, x PUE)
-- @column design_pue_facility_energy_kwh: the part of facility_energy_kwh of minutes without a usable meter (node IT x design PUE)
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
{{ config(materialized='table') }}

with

costed as (
    select * from {{ ref('int_energy_costed_minutes') }}
),

sites as (
    select * from {{ source('fleet', 'dim_site') }}
),

nodes as (
    select * from {{ source('fleet', 'dim_node') }}
),

teams as (
    select * from {{ source('fleet', 'dim_team') }}
),

fleet as (
    select carbon_price_usd_per_tonne, idle_policy, shared_policy from {{ source('fleet', 'dim_fleet') }}
),

team_months as (
    select
        site_id,
        local_month,
        team,
        case
            when bool_or(is_shared) then 'shared'
            when bool_or(is_idle) then 'idle'
            else 'team'
        end as kind,
        cast(sum(requests) as bigint) as requests,
        sum(it_energy_kwh) as it_energy_kwh,
        sum(facility_energy_kwh) as facility_energy_kwh,
        coalesce(sum(facility_energy_kwh) filter (where is_idle), 0) as idle_facility_energy_kwh,
        coalesce(sum(facility_energy_kwh) filter (where is_shared), 0)
        as shared_facility_energy_kwh,
        coalesce(sum(facility_energy_kwh) filter (where not is_metered), 0)
        as design_pue_facility_energy_kwh,
        sum(energy_cost_usd) as energy_cost_usd,
        sum(operational_kgco2e) as operational_kgco2e,
        sum(embodied_kgco2e) as embodied_kgco2e
    from costed
    group by site_id, local_month, team
),

attributed as (
    select * from team_months where kind = 'team'
),

weights as (
    -- each team's fraction of a site-month pool: by its attributed facility energy (evenly if
    -- the teams have none), or evenly over the teams with rows, zero requests or not
    select
        site_id,
        local_month,
        team,
        case
            when sum(facility_energy_kwh) over site_month > 0
                then facility_energy_kwh / sum(facility_energy_kwh) over site_month
            else 1.0 / count(*) over site_month
        end as by_energy,
        1.0 / count(*) over site_month as evenly
    from attributed
    window site_month as (partition by site_id, local_month)
),

pools as (
    -- the idle and the shared energy of a site-month, each with the policy that allocates it
    select
        p.*,
        case p.kind when 'idle' then f.idle_policy else f.shared_policy end as policy
    from team_months as p
    cross join fleet as f
    where p.kind <> 'team'
),

fractions as (
    -- each pool with the teams it is spread over (policies other than `separate`)
    select
        p.*,
        w.team as recipient,
        case p.policy when 'weighted' then w.by_energy else w.evenly end as fraction
    from pools as p
    join weights as w using (site_id, local_month)
    where p.policy <> 'separate'
),

spread as (
    -- a pool spread over the teams: a pool's fractions sum to 1, so nothing is counted twice
    -- (the idle pool is not a recipient of the shared one, nor the other way round)
    select
        p.site_id,
        p.local_month,
        p.recipient as team,
        0 as requests,
        p.fraction * p.it_energy_kwh as it_energy_kwh,
        p.fraction * p.facility_energy_kwh as facility_energy_kwh,
        p.fraction * p.idle_facility_energy_kwh as idle_facility_energy_kwh,
        p.fraction * p.shared_facility_energy_kwh as shared_facility_energy_kwh,
        p.fraction * p.design_pue_facility_energy_kwh as design_pue_facility_energy_kwh,
        p.fraction * p.energy_cost_usd as energy_cost_usd,
        p.fraction * p.operational_kgco2e as operational_kgco2e,
        p.fraction * p.embodied_kgco2e as embodied_kgco2e
    from fractions as p
),

kept as (
    -- a pool keeps its own row when its policy says so, or nobody is there to carry it
    select
        p.site_id,
        p.local_month,
        p.team,
        p.requests,
        p.it_energy_kwh,
        p.facility_energy_kwh,
        p.idle_facility_energy_kwh,
        p.shared_facility_energy_kwh,
        p.design_pue_facility_energy_kwh,
        p.energy_cost_usd,
        p.operational_kgco2e,
        p.embodied_kgco2e
    from pools as p
    where p.policy = 'separate'
        or not exists (
            select 1
            from attributed as a
            where a.site_id = p.site_id and a.local_month = p.local_month
        )
),

pieces as (
    select
        site_id,
        local_month,
        team,
        requests,
        it_energy_kwh,
        facility_energy_kwh,
        idle_facility_energy_kwh,
        shared_facility_energy_kwh,
        design_pue_facility_energy_kwh,
        energy_cost_usd,
        operational_kgco2e,
        embodied_kgco2e
    from attributed
    union all by name
    select * from spread
    union all by name
    select * from kept
),

allocated as (
    select
        a.site_id,
        a.local_month,
        a.team,
        any_value(f.idle_policy) as idle_policy,
        any_value(f.shared_policy) as shared_policy,
        cast(sum(a.requests) as bigint) as requests,
        sum(a.it_energy_kwh) as it_energy_kwh,
        sum(a.facility_energy_kwh) as facility_energy_kwh,
        sum(a.idle_facility_energy_kwh) as idle_facility_energy_kwh,
        sum(a.shared_facility_energy_kwh) as shared_facility_energy_kwh,
        sum(a.design_pue_facility_energy_kwh) as design_pue_facility_energy_kwh,
        sum(a.energy_cost_usd) as energy_cost_usd,
        sum(a.operational_kgco2e) as operational_kgco2e,
        sum(a.embodied_kgco2e) as embodied_kgco2e
    from pieces as a
    cross join fleet as f
    group by a.site_id, a.local_month, a.team
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
        r.shared_policy,
        r.requests,
        r.it_energy_kwh,
        r.facility_energy_kwh,
        r.idle_facility_energy_kwh,
        r.shared_facility_energy_kwh,
        r.design_pue_facility_energy_kwh,
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
