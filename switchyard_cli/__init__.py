"""switchyard_cli"""
