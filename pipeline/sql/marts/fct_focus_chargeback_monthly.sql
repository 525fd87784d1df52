-- Grain: one row per chargeback row (site x team x site-local calendar month, __idle__ and __shared__ rows included).
-- fct_chargeback_monthly as FinOps FOCUS 1.2 cost and usage rows: what `microdc export chargeback
-- --format focus` writes for one month (x_LocalMonth), ordered by RegionId and SubAccountId.
-- BilledCost reconciles 1:1 with the chargeback's total_usd, and per site-month with the facility
-- meter. The four cost columns are all total_usd: an internal chargeback has no list price,
-- discount or commitment, and capex is already amortized by month. The charge and billing
-- periods are the site-local month as UTC instants, end exclusive. Pricing and consumed quantity
-- are the row's facility kWh (the charge's driver). The __idle__ and __shared__ rows have no cost
-- center: both are billed to UNALLOCATED, told apart by BillingAccountName, SubAccountName and
-- ChargeDescription. The cost components ride along as x_ columns, never as rows of their own.
-- @column BilledCost: the row's total_usd (energy + carbon + capex + opex), 6 decimals
-- @column BillingAccountId: the team's cost center, or UNALLOCATED for the __idle__ and __shared__ rows
-- @column BillingAccountName: Cost center <id>, or Unallocated idle capacity / Unallocated shared infrastructure
-- @column BillingAccountType: always Cost center
-- @column BillingCurrency: currency of every cost column (the fleet's)
-- @column BillingPeriodEnd: first instant after the site-local month, UTC, YYYY-MM-DDTHH:mm:ssZ (exclusive)
-- @column BillingPeriodStart: first instant of the site-local month, UTC, YYYY-MM-DDTHH:mm:ssZ
-- @column ChargeCategory: always Usage
-- @column ChargeClass: null (no corrections)
-- @column ChargeDescription: what the row charges: team (or idle capacity, shared infrastructure), site, city, month and policies
-- @column ChargeFrequency: always Usage-Based
-- @column ChargePeriodEnd: as BillingPeriodEnd (one charge per month)
-- @column ChargePeriodStart: as BillingPeriodStart
-- @column ConsumedQuantity: the row's facility energy, kWh, 6 decimals
-- @column ConsumedUnit: always kWh
-- @column ContractedCost: as BilledCost (no negotiated price)
-- @column EffectiveCost: as BilledCost (capex is already amortized by month)
-- @column InvoiceIssuerName: the operator of the micro data centers
-- @column ListCost: as BilledCost (no list price)
-- @column PricingCategory: always Standard
-- @column PricingQuantity: as ConsumedQuantity, kWh
-- @column PricingUnit: always kWh
-- @column ProviderName: the operator of the micro data centers
-- @column PublisherName: the operator of the micro data centers
-- @column RegionId: the site_id
-- @column RegionName: the site's city
-- @column ServiceCategory: always Compute
-- @column ServiceName: Micro data center <site_id>
-- @column SubAccountId: the team (or __idle__, __shared__)
-- @column SubAccountName: the team, or Idle capacity / Shared infrastructure
-- @column SubAccountType: always Team
-- @column x_LocalMonth: the site-local calendar month, YYYY-MM
-- @column x_Requests: requests of the row
-- @column x_ItEnergyKwh: IT energy of the row, kWh
-- @column x_FacilityEnergyKwh: facility energy of the row, kWh
-- @column x_IdleFacilityEnergyKwh: idle facility energy in the row (the teams' share under a spreading idle policy), kWh
-- @column x_SharedFacilityEnergyKwh: shared infrastructure facility energy in the row, kWh
-- @column x_DesignPueFacilityEnergyKwh: facility energy of minutes without a usable meter (node IT x design PUE), kWh
-- @column x_OperationalKgCO2e: operational carbon of the row, kg
-- @column x_EmbodiedKgCO2e: embodied carbon of the row, kg
-- @column x_EnergyCostUsd: energy cost of the row, USD
-- @column x_CarbonCostUsd: carbon cost of the row, USD
-- @column x_CapexShareUsd: capex share of the row, USD
-- @column x_OpexShareUsd: opex share of the row, USD
-- @column x_IdlePolicy: the fleet's idle policy that produced the rows
-- @column x_SharedPolicy: the fleet's shared policy that produced the rows
{{ config(materialized='table') }}

with

chargeback as (
    select * from {{ ref('fct_chargeback_monthly') }}
),

sites as (
    select site_id, city, timezone from {{ source('fleet', 'dim_site') }}
),

fleet as (
    select currency from {{ source('fleet', 'dim_fleet') }}
),

charges as (
    -- the site-local month [start, next start) as UTC instants (DST-aware, via ICU)
    select
        c.*,
        s.city,
        f.currency,
        timezone('UTC', timezone(s.timezone, cast(c.local_month as timestamp))) as period_start,
        timezone('UTC', timezone(s.timezone, cast(c.local_month + interval 1 month as timestamp)))
        as period_end
    from chargeback as c
    join sites as s using (site_id)
    cross join fleet as f
),

final as (
    select
        cast(round(total_usd, 6) as decimal(18, 6)) as BilledCost,
        coalesce(cost_center, 'UNALLOCATED') as BillingAccountId,
        case
            when team = '__shared__' then 'Unallocated shared infrastructure'
            when cost_center is null then 'Unallocated idle capacity'
            else 'Cost center ' || cost_center
        end as BillingAccountName,
        'Cost center' as BillingAccountType,
        currency as BillingCurrency,
        strftime(period_end, '%Y-%m-%dT%H:%M:%SZ') as BillingPeriodEnd,
        strftime(period_start, '%Y-%m-%dT%H:%M:%SZ') as BillingPeriodStart,
        'Usage' as ChargeCategory,
        cast(null as varchar) as ChargeClass,
        case
            when team = '__idle__'
                then 'Idle capacity of micro data center ' || site_id || ' (' || city || '), '
                || strftime(local_month, '%Y-%m') || ', not attributed to a team (idle policy '
                || idle_policy || '): energy, carbon, capex and opex'
            when team = '__shared__'
                then 'Shared infrastructure of micro data center ' || site_id || ' (' || city
                || '), ' || strftime(local_month, '%Y-%m') || ': metered IT load no server'
                || ' reported (network, storage, power distribution) and its cooling overhead,'
                || ' not attributed to a team (shared policy ' || shared_policy
                || '): energy, carbon, capex and opex'
            else 'Chargeback of team ' || team || ' at micro data center ' || site_id || ' ('
                || city || '), ' || strftime(local_month, '%Y-%m')
                || ': shares of energy, carbon, capex and opex (idle policy ' || idle_policy
                || ', shared policy ' || shared_policy || ')'
        end as ChargeDescription,
        'Usage-Based' as ChargeFrequency,
        strftime(period_end, '%Y-%m-%dT%H:%M:%SZ') as ChargePeriodEnd,
        strftime(period_start, '%Y-%m-%dT%H:%M:%SZ') as ChargePeriodStart,
        cast(round(facility_energy_kwh, 6) as decimal(18, 6)) as ConsumedQuantity,
        'kWh' as ConsumedUnit,
        cast(round(total_usd, 6) as decimal(18, 6)) as ContractedCost,
        cast(round(total_usd, 6) as decimal(18, 6)) as EffectiveCost,
        'Micro-DC Operations' as InvoiceIssuerName,
        cast(round(total_usd, 6) as decimal(18, 6)) as ListCost,
        'Standard' as PricingCategory,
        cast(round(facility_energy_kwh, 6) as decimal(18, 6)) as PricingQuantity,
        'kWh' as PricingUnit,
        'Micro-DC Operations' as ProviderName,
        'Micro-DC Operations' as PublisherName,
        site_id as RegionId,
        city as RegionName,
        'Compute' as ServiceCategory,
        'Micro data center ' || site_id as ServiceName,
        team as SubAccountId,
        case
            when team = '__idle__' then 'Idle capacity'
            when team = '__shared__' then 'Shared infrastructure'
            else team
        end as SubAccountName,
        'Team' as SubAccountType,
        strftime(local_month, '%Y-%m') as x_LocalMonth,
        cast(requests as bigint) as x_Requests,
        cast(round(it_energy_kwh, 6) as decimal(18, 6)) as x_ItEnergyKwh,
        cast(round(facility_energy_kwh, 6) as decimal(18, 6)) as x_FacilityEnergyKwh,
        cast(round(idle_facility_energy_kwh, 6) as decimal(18, 6)) as x_IdleFacilityEnergyKwh,
        cast(round(shared_facility_energy_kwh, 6) as decimal(18, 6)) as x_SharedFacilityEnergyKwh,
        cast(round(design_pue_facility_energy_kwh, 6) as decimal(18, 6))
        as x_DesignPueFacilityEnergyKwh,
        cast(round(operational_kgco2e, 6) as decimal(18, 6)) as x_OperationalKgCO2e,
        cast(round(embodied_kgco2e, 6) as decimal(18, 6)) as x_EmbodiedKgCO2e,
        cast(round(energy_cost_usd, 6) as decimal(18, 6)) as x_EnergyCostUsd,
        cast(round(carbon_cost_usd, 6) as decimal(18, 6)) as x_CarbonCostUsd,
        cast(round(capex_share_usd, 6) as decimal(18, 6)) as x_CapexShareUsd,
        cast(round(opex_share_usd, 6) as decimal(18, 6)) as x_OpexShareUsd,
        idle_policy as x_IdlePolicy,
        shared_policy as x_SharedPolicy
    from charges
)

select * from final
