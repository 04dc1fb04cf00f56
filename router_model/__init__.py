"""router_model"""
