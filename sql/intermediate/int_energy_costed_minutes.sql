-- Grain: one row per minute x node x service (natural key `key`), idle rows included.
-- Energy minutes priced: each row gets its site's local time, local calendar month and the tariff
-- of the local time of day (dim_tariff). Grid energy = facility energy x (1 - the row's on-site
-- renewable share, clamped to [0, 1]); only grid energy is bought, so energy cost = grid kWh x
-- tariff. A local time before the day's first tariff period takes the last period's price (a
-- period runs until the next one starts, wrapping past midnight).
-- @column local_ts: start of the minute in the site's local time (timezone from dim_site)
-- @column local_month: first day of the site-local calendar month of the minute
-- @column local_minute_of_day: minutes since local midnight, the tariff lookup key
-- @column is_idle: the row is a node's idle energy (service and team __idle__)
-- @column facility_energy_kwh: IT energy x PUE, kWh
-- @column grid_energy_kwh: facility kWh x (1 - renewable share): the energy bought from the grid
-- @column usd_per_kwh: tariff price of the local time of day
-- @column energy_cost_usd: grid kWh x usd_per_kwh
-- @column operational_kgco2e: operational carbon of the row, kg
-- @column embodied_kgco2e: embodied carbon time share of the row, kg
with

energy as (
    select * from stg_energy_minutes
),

sites as (
    select site_id, timezone from dim_site
),

tariffs as (
    select * from dim_tariff
),

localized as (
    select
        e.*,
        timezone(s.timezone, e.window_start) as local_ts
    from energy as e
    join sites as s using (site_id)
),

calendared as (
    select
        *,
        cast(date_trunc('month', local_ts) as date) as local_month,
        hour(local_ts) * 60 + minute(local_ts) as local_minute_of_day,
        service = '__idle__' as is_idle,
        facility_energy_wh / 1000 as facility_energy_kwh,
        facility_energy_wh / 1000
        * (1 - least(greatest(coalesce(renewable_share, 0), 0), 1)) as grid_energy_kwh
    from localized
),

wrapped_tariffs as (
    -- the last period of the day also covers the minutes before the first period starts
    select site_id, start_minute, end_minute, usd_per_kwh
    from tariffs
    union all
    select site_id, 0 as start_minute, min(start_minute) as end_minute, arg_max(usd_per_kwh, start_minute)
    from tariffs
    group by site_id
    having min(start_minute) > 0
),

priced as (
    select
        c.*,
        t.usd_per_kwh
    from calendared as c
    left join wrapped_tariffs as t
        on c.site_id = t.site_id
        and c.local_minute_of_day >= t.start_minute
        and c.local_minute_of_day < t.end_minute
),

final as (
    select
        key,
        window_start,
        local_ts,
        local_month,
        local_minute_of_day,
        site_id,
        node_id,
        service,
        team,
        is_idle,
        requests,
        it_energy_wh / 1000 as it_energy_kwh,
        facility_energy_kwh,
        renewable_share,
        grid_energy_kwh,
        usd_per_kwh,
        grid_energy_kwh * usd_per_kwh as energy_cost_usd,
        operational_gco2e / 1000 as operational_kgco2e,
        embodied_gco2e / 1000 as embodied_kgco2e
    from priced
)

select * from final
