"""hfrnn: Hessian-free optimisation of recurrent networks (Martens & Sutskever, 2011)."""
__version__ = "0.3.0"
