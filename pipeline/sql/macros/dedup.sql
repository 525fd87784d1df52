{#
  dedup(relation, partition_by, order_by): one row per key of `relation` (a CTE or a relation),
  the first by `order_by`. The lake holds a record again when Kafka delivered it twice or the
  stream re-emitted a window after a failover (identical values): staging keeps it once.
  Silver datasets order by `_kafka_timestamp, _partition, _offset` (the earliest landed), bronze
  ones by `_partition, _offset`.
  Example: deduplicated as ({{ dedup('source', 'key') }})
#}
{% macro dedup(relation, partition_by, order_by='_kafka_timestamp, _partition, _offset') -%}
select *
    from {{ relation }}
    qualify row_number() over (partition by {{ partition_by }} order by {{ order_by }}) = 1
{%- endmacro %}
