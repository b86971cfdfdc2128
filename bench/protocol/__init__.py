"""The method protocol: what a method provides, what its stages receive, the values they exchange."""
