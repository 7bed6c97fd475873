"""Imported by the lab's agent forkserver only (see ``cotenant.lab.agent_zygote``)."""

from cotenant.lab.agent_zygote import prepare_server

prepare_server()
