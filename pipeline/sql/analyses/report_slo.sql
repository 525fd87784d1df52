-- The report: SLO status per service and site (or __all__) over the period, with the targets.
with

slo as (
    select * from fct_slo_daily
),

targets as (
    select
        service,
        any_value(availability_target) as availability_target,
        any_value(latency_target) as latency_target
    from dim_service
    group by service
),

period as (
    select
        service,
        site_id,
        max(date_utc) as last_date,
        sum(requests) as requests,
        sum(bad_availability) as bad_availability,
        sum(bad_latency) as bad_latency,
        arg_max(availability_budget_remaining, date_utc) as availability_budget_remaining,
        arg_max(latency_budget_remaining, date_utc) as latency_budget_remaining,
        max(worst_availability_burn) as worst_availability_burn,
        max(worst_latency_burn) as worst_latency_burn
    from slo
    group by service, site_id
    having sum(requests) > 0
),

final as (
    select
        p.service,
        p.site_id,
        p.last_date,
        p.requests,
        p.bad_availability,
        p.bad_latency,
        t.availability_target,
        t.latency_target,
        p.availability_budget_remaining,
        p.latency_budget_remaining,
        p.worst_availability_burn,
        p.worst_latency_burn
    from period as p
    left join targets as t using (service)
)

select * from final order by service, site_id = '__all__', site_id
