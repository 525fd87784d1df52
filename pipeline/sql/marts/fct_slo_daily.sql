-- Grain: one row per service x site (or __all__) x UTC day.
-- SLOs by day: the day's SLIs from its minute counts, the error budget left at the day's last
-- minute, and the worst burn rate any window reached during the day.
-- @column availability_sli: share of the day's requests with status < 500
-- @column latency_sli: share of the day's requests within the latency threshold
-- @column availability_budget_remaining: availability error budget left over the SLO period, end of day
-- @column latency_budget_remaining: latency error budget left over the SLO period, end of day
-- @column worst_availability_burn: highest availability burn rate of any window in the day
-- @column worst_latency_burn: highest latency burn rate of any window in the day
{{ config(materialized='table') }}

with

burn as (
    select * from {{ ref('stg_slo_burn') }}
),

daily as (
    select
        service,
        site_id,
        cast(window_start as date) as date_utc,
        cast(sum(requests) as bigint) as requests,
        cast(sum(bad_availability) as bigint) as bad_availability,
        cast(sum(bad_latency) as bigint) as bad_latency,
        arg_max(availability_budget_remaining, window_start) as availability_budget_remaining,
        arg_max(latency_budget_remaining, window_start) as latency_budget_remaining,
        max(list_max(map_values(availability_burn))) as worst_availability_burn,
        max(list_max(map_values(latency_burn))) as worst_latency_burn
    from burn
    group by all
),

final as (
    select
        service,
        site_id,
        date_utc,
        requests,
        bad_availability,
        bad_latency,
        1 - bad_availability / nullif(requests, 0) as availability_sli,
        1 - bad_latency / nullif(requests, 0) as latency_sli,
        availability_budget_remaining,
        latency_budget_remaining,
        worst_availability_burn,
        worst_latency_burn
    from daily
)

select * from final
