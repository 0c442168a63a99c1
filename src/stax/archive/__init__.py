"""Archives of finished runs (save/open, a versioned directory format), compare, and exports.

Everything here reads the profile tables only: no server or CLI imports.
"""
