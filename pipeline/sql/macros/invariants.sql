{#
  The warehouse's reconciliation invariants, one home for both readers: `microdc quality
  check` renders them (pipeline/quality/invariants.py: each row becomes a checked,
  explained result) and dbt's singular tests in tests/ select their failing rows. Every query
  returns one row per site and site-local month: what the invariant expects and what the
  warehouse holds. The default tolerances are those of pipeline/quality/invariants.py (a unit
  test keeps them equal).
#}

{#
  Per node-minute, the stream's energy (all services plus __idle__, stg_energy_minutes) against
  the bronze recomputation (int_node_energy_minutes_from_bronze): `mismatched` node-minutes off
  by more than `tolerance_wh` (the stream sums integer micro-Wh, SQL sums floats).
#}
{% macro node_energy_conservation(tolerance_wh=0.00001) -%}
with stream as (
    select node_id, site_id, window_start, sum(it_energy_wh) as wh
    from {{ ref('stg_energy_minutes') }}
    group by all
),
joined as (
    select
        s.site_id,
        cast(date_trunc('month', timezone(d.timezone, s.window_start)) as date) as month,
        b.it_energy_wh as expected,
        s.wh as actual
    from stream as s
    join {{ ref('int_node_energy_minutes_from_bronze') }} as b using (node_id, window_start)
    join {{ source('fleet', 'dim_site') }} as d on d.site_id = s.site_id
)
select
    site_id,
    month,
    sum(expected) as expected,
    sum(actual) as actual,
    count(*) as compared,
    count(*) filter (where not abs(actual - expected) <= {{ tolerance_wh }}) as mismatched,
    max(abs(actual - expected)) as worst
from joined
group by all
order by site_id, month
{%- endmacro %}

{#
  What the chargeback must add up to, from the facility meter itself (silver site minutes), not
  from the attributed rows it is built from: per site and site-local month, the meter's facility
  kWh over the minutes it metered (pue_source = 'metered'), plus node IT x design PUE over the
  minutes without a usable meter; and the energy cost of that energy, grid share only, at the
  local tariff of each minute (what the utility bills). The calendar and the tariff of a
  site-minute come from int_site_minute_prices, the one home of both; sites missing from
  dim_site are dropped there, as in the mart. Beside it, what fct_chargeback_monthly charged.
#}
{% macro chargeback_against_meter() -%}
with minutes as (
    select
        m.site_id,
        p.local_month as month,
        m.pue_source = 'metered' as metered,
        case
            when m.pue_source = 'metered' then m.metered_facility_energy_wh
            else m.node_it_energy_wh * m.pue
        end / 1000 as kwh,
        least(greatest(coalesce(m.renewable_share, 0), 0), 1) as renewable_share,
        p.usd_per_kwh
    from {{ ref('stg_site_minutes') }} as m
    join {{ ref('int_site_minute_prices') }} as p using (site_id, window_start)
),
meter as (
    select
        site_id,
        month,
        coalesce(sum(kwh) filter (where metered), 0) as meter_kwh,
        coalesce(sum(kwh) filter (where not metered), 0) as design_kwh,
        count(*) filter (where not metered) as design_minutes,
        sum(kwh * (1 - renewable_share) * usd_per_kwh) as cost_usd
    from minutes
    group by all
),
mart as (
    select
        site_id,
        local_month as month,
        sum(facility_energy_kwh) as kwh,
        sum(energy_cost_usd) as cost_usd
    from {{ ref('fct_chargeback_monthly') }}
    group by all
)
select
    site_id,
    month,
    meter.meter_kwh,
    meter.design_kwh,
    meter.design_minutes,
    meter.meter_kwh + meter.design_kwh as expected_kwh,
    mart.kwh as actual_kwh,
    meter.cost_usd as expected_usd,
    mart.cost_usd as actual_usd
from meter
full join mart using (site_id, month)
order by site_id, month
{%- endmacro %}

{#
  A valid meter whose IT reading is below the node sum (meter drift, a node outside the meter):
  the chargeback follows the meter's facility energy there; the minutes are reported.
#}
{% macro meter_below_nodes() -%}
select
    m.site_id,
    p.local_month as month,
    count(*) as minutes,
    sum(m.nodes_over_meter_it_wh) / 1000 as kwh
from {{ ref('int_site_meter_minutes') }} as m
join {{ ref('int_site_minute_prices') }} as p using (site_id, window_start)
where m.meter_status = 'meter_below_nodes'
group by all
order by all
{%- endmacro %}

{#
  Every chargeback row's total_usd against the sum of its cost parts (`cost_parts`: energy,
  carbon, capex share, opex share): per site-month the sums, and the rows off by more than
  abs_tol + rel_tol x |parts|.
#}
{% macro chargeback_total_against_parts(abs_tol=0.000001, rel_tol=0.000000001) -%}
{%- set parts = 'energy_cost_usd + carbon_cost_usd + capex_share_usd + opex_share_usd' -%}
select
    site_id,
    local_month as month,
    sum({{ parts }}) as expected,
    sum(total_usd) as actual,
    count(*) as rows,
    count(*) filter (
        where not abs(total_usd - ({{ parts }})) <= {{ abs_tol }} + {{ rel_tol }} * abs({{ parts }})
    ) as mismatched
from {{ ref('fct_chargeback_monthly') }}
group by all
order by site_id, month
{%- endmacro %}
