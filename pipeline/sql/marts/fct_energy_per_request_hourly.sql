-- Grain: one row per site x service x team x UTC hour with requests.
-- Energy, carbon and latency per request by hour: the chart-ready join of the stream's energy
-- minutes (attributed energy; the __idle__ rows are not a service's and stay out) and the
-- request logs' exact latency quantiles. Ratios are sums over sums, never averages of ratios.
-- @column hour_utc: start of the UTC hour
-- @column requests: requests that finished in the hour
-- @column it_wh_per_request: attributed IT Wh / requests
-- @column facility_wh_per_request: attributed facility Wh (IT x PUE) / requests
-- @column gco2e_per_request: (operational + embodied gCO2e) / requests: SCI per request
-- @column latency_p50_ms: median latency of the hour's requests (exact, from the request logs)
-- @column latency_p95_ms: 95th percentile latency of the hour's requests (exact)
{{ config(materialized='table') }}

with

energy as (
    select * from {{ ref('stg_energy_minutes') }}
),

requests as (
    select * from {{ ref('stg_request_log') }}
),

energy_hourly as (
    select
        site_id,
        service,
        team,
        date_trunc('hour', window_start) as hour_utc,
        cast(sum(requests) as bigint) as requests,
        sum(it_energy_wh) as it_energy_wh,
        sum(facility_energy_wh) as facility_energy_wh,
        sum(operational_gco2e) as operational_gco2e,
        sum(embodied_gco2e) as embodied_gco2e
    from energy
    where service <> '__idle__'
    group by all
),

latency_hourly as (
    select
        site_id,
        service,
        date_trunc('hour', finished_at) as hour_utc,
        quantile_cont(latency_ms, 0.5) as latency_p50_ms,
        quantile_cont(latency_ms, 0.95) as latency_p95_ms
    from requests
    group by all
),

final as (
    select
        e.site_id,
        e.service,
        e.team,
        e.hour_utc,
        e.requests,
        e.it_energy_wh,
        e.facility_energy_wh,
        e.operational_gco2e,
        e.embodied_gco2e,
        e.it_energy_wh / nullif(e.requests, 0) as it_wh_per_request,
        e.facility_energy_wh / nullif(e.requests, 0) as facility_wh_per_request,
        (e.operational_gco2e + e.embodied_gco2e) / nullif(e.requests, 0) as gco2e_per_request,
        l.latency_p50_ms,
        l.latency_p95_ms
    from energy_hourly as e
    left join latency_hourly as l using (site_id, service, hour_utc)
    where e.requests > 0
)

select * from final
