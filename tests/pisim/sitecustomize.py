"""Loaded by Python at start-up when tests/pisim is on PYTHONPATH (a CLI run by a test): the simulated
kernel devices go under picamera2 before anything imports it."""
import pisim

pisim.install()
