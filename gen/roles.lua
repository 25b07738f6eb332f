-- roles: what a kernel argument is to its function, in one table that the passes, lower,
-- emit_c and the C library (kg_lua.c reads the role names and file suffixes) follow: whether
-- the function reads or writes it, the suffix of its C name and of its .npy file in
-- `kerngen run`, and the words that document it in the header. The C enum kg_role lists the
-- same names: the read-only ones first, then the written ones, then the ones read and written.

return {
  input          = { reads = true,  cname = "",      file = "",           doc = "input" },
  cotangent      = { reads = true,  cname = "_cot",  file = ".cotangent", doc = "cotangent of output" },
  tangent        = { reads = true,  cname = "_tan",  file = ".tangent",   doc = "tangent of input" },
  saved          = { reads = true,  cname = "",      file = ".saved",     doc = "saved by forward_train:" },
  hyper          = { reads = true,  cname = "",      file = "",           doc = "optimizer hyperparameters" },
  output         = { reads = false, cname = "",      file = "",           doc = "output" },
  grad           = { reads = false, cname = "_grad", file = ".grad",      doc = "gradient of input" },
  output_tangent = { reads = false, cname = "_tan",  file = ".tangent",   doc = "tangent of output" },
  save           = { reads = false, cname = "",      file = ".saved",     doc = "saved for vjp_saved:" },
  -- read and written: the train pass updates them in place
  param          = { reads = true,  inplace = true, cname = "", file = "", doc = "trainable, updated in place:" },
  state          = { reads = true,  inplace = true, cname = "", file = "", doc = "optimizer state, updated in place:" },
}
