"""Gateways as data: who may publish for which sensors, and the broker's users that enforce it.

A gateway is a row of the registry (``storage/gateways.py``) that owns sensors; the broker
(Mosquitto's dynamic-security plugin) holds its credentials, hashed, and one ACL entry per
topic it may publish to (``acl.py``), changed at run time over MQTT (``broker.py``).
"""
