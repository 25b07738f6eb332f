-- expect: a spec must return a graph table (or a list of them), not nil
return nil
