-- expect: syntax.lua:3: 
return {
  name = = "bad_syntax",
}
