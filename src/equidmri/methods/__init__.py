"""Every fODF method behind one table (:mod:`equidmri.methods.registry`): ``get_method(name, gtab).fit(dwi, mask)``."""

from equidmri.methods.registry import DEFAULT_METHOD, METHODS, FODFMethod, Method, find_method, get_method

__all__ = ["DEFAULT_METHOD", "METHODS", "FODFMethod", "Method", "find_method", "get_method"]
