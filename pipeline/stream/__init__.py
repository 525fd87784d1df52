"""Event-time stream engine: stage 1 per input partition, stage 2 per fleet; pure, no Kafka."""
