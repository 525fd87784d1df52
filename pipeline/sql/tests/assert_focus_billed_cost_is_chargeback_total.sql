-- Invariant: the FOCUS projection has one row per chargeback row, and its BilledCost is the
-- row's total_usd at 6 decimals. A row returned is a failure.
with

chargeback as (
    select site_id, team, strftime(local_month, '%Y-%m') as month, total_usd
    from {{ ref('fct_chargeback_monthly') }}
),

focus as (
    select RegionId as site_id, SubAccountId as team, x_LocalMonth as month, BilledCost
    from {{ ref('fct_focus_chargeback_monthly') }}
),

final as (
    select *
    from chargeback as c
    full outer join focus as f using (site_id, team, month)
    where
        c.total_usd is null
        or f.BilledCost is null
        or f.BilledCost <> cast(round(c.total_usd, 6) as decimal(18, 6))
)

select * from final
