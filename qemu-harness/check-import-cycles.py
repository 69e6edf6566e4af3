#!/usr/bin/env python3
# Import cycles between the modules (files) of src/: `python3 qemu-harness/check-import-cycles.py src`
# prints each cycle and exits 1; `-v` lists every edge. Test modules (after #[cfg(test)]) are left out.
import os,re,sys
root=sys.argv[1]
mods={}
for dp,dn,fn in os.walk(root):
    for f in fn:
        if not f.endswith('.rs'): continue
        p=os.path.join(dp,f); rel=os.path.relpath(p,root)[:-3].split('/')
        if rel[-1] in ('mod','lib','main'): rel=rel[:-1]
        mods['::'.join(rel)]=p
def resolve(cur,path):
    parts=path.split('::')
    if parts[0]=='crate': base=[]; parts=parts[1:]
    elif parts[0]=='super':
        base=cur.split('::')[:-1] if cur else []
        parts=parts[1:]
        while parts and parts[0]=='super': base=base[:-1]; parts=parts[1:]
    elif parts[0]=='self': base=cur.split('::') if cur else []; parts=parts[1:]
    full=base+parts
    # longest prefix that is a module
    for i in range(len(full),0,-1):
        m='::'.join(full[:i])
        if m in mods: return m
    return None
edges={}
for m,p in mods.items():
    text=open(p).read()
    i=text.find('#[cfg(test)]')
    if i>=0: text=text[:i]
    text=re.sub(r'//[^\n]*','',text)
    deps=set()
    for mm in re.finditer(r'\b((?:crate|super|self)(?:::\w+)+)',text):
        d=resolve(m,mm.group(1))
        if d and d!=m and not d.startswith(m+'::') and not m.startswith(d+'::') : deps.add(d)
        elif d and d!=m and m.startswith(d+'::') and d.count('::')>=0:
            # dependency on a parent module's items: count it, unless the parent is only a re-export hub
            deps.add(d)
    # use statements with braces: use super::{a, b::c}
    for mm in re.finditer(r'use\s+((?:crate|super|self)(?:::\w+)*)::\{([^}]*)\}',text):
        for item in mm.group(2).split(','):
            item=item.strip().split(' ')[0]
            if not item: continue
            d=resolve(m,mm.group(1)+'::'+item)
            if d and d!=m: deps.add(d)
    edges[m]=deps
# strongly connected components (Tarjan)
idx={};low={};st=[];on=set();sccs=[];c=[0]
sys.setrecursionlimit(10000)
def sc(v):
    idx[v]=low[v]=c[0];c[0]+=1;st.append(v);on.add(v)
    for w in edges.get(v,()):
        if w not in idx: sc(w);low[v]=min(low[v],low[w])
        elif w in on: low[v]=min(low[v],idx[w])
    if low[v]==idx[v]:
        comp=[]
        while True:
            w=st.pop();on.discard(w);comp.append(w)
            if w==v:break
        if len(comp)>1: sccs.append(comp)
for v in edges:
    if v not in idx: sc(v)
for comp in sccs:
    print("cycle:", ' '.join(sorted(comp)))
    for a in sorted(comp):
        print("  ",a,'->',' '.join(sorted(d for d in edges[a] if d in comp)))
if '-v' in sys.argv:
    for m in sorted(edges): print(m,'->',' '.join(sorted(edges[m])))
sys.exit(1 if sccs else 0)
