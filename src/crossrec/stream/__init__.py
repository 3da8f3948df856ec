"""Streams of events into the store: the Kafka consumer (:mod:`crossrec.stream.consumer`).

Nothing is imported here, so ``import crossrec.stream`` does not load the Kafka client.
"""
