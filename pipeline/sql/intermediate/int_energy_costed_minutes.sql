-- Grain: one row per minute x node x service (natural key `key`), idle rows included, plus one
-- `__shared__` row per metered site-minute with shared infrastructure energy (key
-- `<minute>|<site>|__shared__`, no node).
-- Energy minutes priced, and reconciled with the facility meter (int_site_meter_minutes): node
-- rows carry their IT energy x PUE, scaled down where the meter's IT reading is below the node
-- sum; the shared row carries the metered IT load no node reported and its overhead. Per
-- site-minute the rows' facility energy is therefore the meter's (or node IT x design PUE where
-- no meter counts). Each row gets its site-minute's local time, month and tariff
-- (int_site_minute_prices). Grid energy = facility energy x (1 - the row's on-site renewable
-- share, clamped to [0, 1]); only grid energy is bought, so energy cost = grid kWh x tariff.
-- @column is_idle: the row is a node's idle energy (service and team __idle__)
-- @column is_shared: the row is the site-minute's shared infrastructure energy (service and team __shared__)
-- @column meter_status: the site-minute's meter status (int_site_meter_minutes)
-- @column is_metered: the row's facility energy follows the facility meter (not design PUE)
-- @column facility_energy_kwh: IT energy x PUE (x the meter scale), kWh
-- @column grid_energy_kwh: facility kWh x (1 - renewable share): the energy bought from the grid
-- @column energy_cost_usd: grid kWh x usd_per_kwh
-- @column operational_kgco2e: operational carbon of the row, kg
-- @column embodied_kgco2e: embodied carbon time share of the row, kg
with

energy as (
    select * from {{ ref('stg_energy_minutes') }}
),

meters as (
    select * from {{ ref('int_site_meter_minutes') }}
),

prices as (
    select * from {{ ref('int_site_minute_prices') }}
),

node_rows as (
    select
        e.key,
        e.window_start,
        e.site_id,
        e.node_id,
        e.service,
        e.team,
        e.requests,
        e.it_energy_wh,
        e.facility_energy_wh * coalesce(m.node_facility_scale, 1.0) as facility_energy_wh,
        e.renewable_share,
        e.operational_gco2e * coalesce(m.node_facility_scale, 1.0) as operational_gco2e,
        e.embodied_gco2e,
        coalesce(m.meter_status, e.pue_source) as meter_status,
        coalesce(m.is_metered, e.pue_source = 'metered') as is_metered
    from energy as e
    left join meters as m using (site_id, window_start)
),

shared_rows as (
    select
        m.key || '|__shared__' as key,
        m.window_start,
        m.site_id,
        cast(null as varchar) as node_id,
        '__shared__' as service,
        '__shared__' as team,
        0 as requests,
        m.shared_it_energy_wh as it_energy_wh,
        m.shared_facility_energy_wh as facility_energy_wh,
        m.renewable_share,
        m.shared_operational_gco2e as operational_gco2e,
        0.0 as embodied_gco2e,
        m.meter_status,
        m.is_metered
    from meters as m
    where m.shared_it_energy_wh > 0
),

all_rows as (
    select * from node_rows
    union all by name
    select * from shared_rows
),

final as (
    select
        r.key,
        r.window_start,
        p.local_ts,
        p.local_month,
        p.local_minute_of_day,
        r.site_id,
        r.node_id,
        r.service,
        r.team,
        r.service = '__idle__' as is_idle,
        r.service = '__shared__' as is_shared,
        r.meter_status,
        r.is_metered,
        r.requests,
        r.it_energy_wh / 1000 as it_energy_kwh,
        r.facility_energy_wh / 1000 as facility_energy_kwh,
        r.renewable_share,
        r.facility_energy_wh / 1000
        * (1 - least(greatest(coalesce(r.renewable_share, 0), 0), 1)) as grid_energy_kwh,
        p.usd_per_kwh,
        r.facility_energy_wh / 1000
        * (1 - least(greatest(coalesce(r.renewable_share, 0), 0), 1)) * p.usd_per_kwh
        as energy_cost_usd,
        r.operational_gco2e / 1000 as operational_kgco2e,
        r.embodied_gco2e / 1000 as embodied_kgco2e
    from all_rows as r
    join prices as p using (site_id, window_start)
)

select * from final
