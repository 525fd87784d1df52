-- Invariant: every chargeback row's total_usd = energy + carbon + capex + opex, to rounding
-- (the tolerance of pipeline/quality/invariants.py; the query is the macro `microdc quality
-- check` runs). A site-month returned is a failure.
with

totals as (
    {{ chargeback_total_against_parts() }}
),

final as (
    select * from totals where mismatched > 0 or actual is null
)

select * from final
