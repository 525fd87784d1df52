-- Grain: one row per site x UTC minute with energy or site data (sites of dim_site only).
-- The site-local calendar and the tariff of a site-minute, in one place: the chargeback's rows
-- and the meter reconciliation price the same minute alike. A local time before the day's
-- first tariff period takes the last period's price (a period runs until the next one starts,
-- wrapping past midnight).
{{ config(materialized='table') }}

with

minutes as (
    select site_id, window_start from {{ ref('stg_site_minutes') }}
    union
    select site_id, window_start from {{ ref('stg_energy_minutes') }}
),

sites as (
    select site_id, timezone from {{ source('fleet', 'dim_site') }}
),

tariffs as (
    select * from {{ source('fleet', 'dim_tariff') }}
),

localized as (
    select
        m.site_id,
        m.window_start,
        timezone(s.timezone, m.window_start) as local_ts
    from minutes as m
    join sites as s using (site_id)
),

calendared as (
    select
        *,
        cast(date_trunc('month', local_ts) as date) as local_month,
        hour(local_ts) * 60 + minute(local_ts) as local_minute_of_day
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

final as (
    select
        c.site_id,
        c.window_start,
        c.local_ts,
        c.local_month,
        c.local_minute_of_day,
        t.usd_per_kwh
    from calendared as c
    left join wrapped_tariffs as t
        on c.site_id = t.site_id
        and c.local_minute_of_day >= t.start_minute
        and c.local_minute_of_day < t.end_minute
)

select * from final
