"""A quiz pack as one self-contained HTML file: plots embedded, no server, no network.

The page opens each chosen option's sealed feedback itself, with the same construction as
`sim/quizpack.py` (HMAC-SHA256 keystream and tag), in plain JavaScript: SHA-256 is written out
below rather than taken from `crypto.subtle`, which browsers may withhold from file:// pages.
The first click on an option of a part locks that part; the feedback shows once both parts of
a question are answered.
"""
from __future__ import annotations

import base64
import html as escape
import json
from pathlib import Path

STYLE = """
body{font:15px/1.45 system-ui,sans-serif;max-width:980px;margin:0 auto;padding:16px 20px;
color:#1d2330;background:#fafbfc}
h1{font-size:24px;margin:8px 0}h2{font-size:19px;margin:0 0 8px}
section{background:#fff;border:1px solid #d9dde3;border-radius:8px;padding:14px 18px;margin:18px 0}
pre{background:#f3f5f8;border:1px solid #e3e6ea;border-radius:5px;padding:8px;overflow:auto;
font-size:12px;max-height:320px}
.story{white-space:pre-wrap}.plots img{max-width:100%;border:1px solid #e3e6ea;margin:6px 0}
.part{margin:12px 0}.part b{display:block;margin-bottom:6px}
button.option{display:block;width:100%;text-align:left;margin:4px 0;padding:7px 10px;
border:1px solid #b8c0cc;border-radius:6px;background:#fff;font:inherit;cursor:pointer}
button.option:hover:enabled{background:#eef3fb}button.option:disabled{cursor:default;color:#555}
button.option.chosen{border-width:2px;border-color:#3060c0;color:#000}
button.option.right{background:#e3f4e6;border-color:#2f8a43}
button.option.wrong{background:#fbe6e4;border-color:#b8433a}
.feedback{white-space:pre-wrap;border-left:4px solid #3060c0;padding:6px 12px;margin:8px 0;
background:#f6f8fc}.verdict{font-weight:600}
#score{position:sticky;top:0;background:#1d2330;color:#fff;padding:8px 14px;border-radius:6px}
"""

SCRIPT = r"""
const K=[0x428a2f98,0x71374491,0xb5c0fbcf,0xe9b5dba5,0x3956c25b,0x59f111f1,0x923f82a4,0xab1c5ed5,0xd807aa98,0x12835b01,0x243185be,0x550c7dc3,0x72be5d74,0x80deb1fe,0x9bdc06a7,0xc19bf174,0xe49b69c1,0xefbe4786,0x0fc19dc6,0x240ca1cc,0x2de92c6f,0x4a7484aa,0x5cb0a9dc,0x76f988da,0x983e5152,0xa831c66d,0xb00327c8,0xbf597fc7,0xc6e00bf3,0xd5a79147,0x06ca6351,0x14292967,0x27b70a85,0x2e1b2138,0x4d2c6dfc,0x53380d13,0x650a7354,0x766a0abb,0x81c2c92e,0x92722c85,0xa2bfe8a1,0xa81a664b,0xc24b8b70,0xc76c51a3,0xd192e819,0xd6990624,0xf40e3585,0x106aa070,0x19a4c116,0x1e376c08,0x2748774c,0x34b0bcb5,0x391c0cb3,0x4ed8aa4a,0x5b9cca4f,0x682e6ff3,0x748f82ee,0x78a5636f,0x84c87814,0x8cc70208,0x90befffa,0xa4506ceb,0xbef9a3f7,0xc67178f2];
function sha256(m){const H=[0x6a09e667,0xbb67ae85,0x3c6ef372,0xa54ff53a,0x510e527f,0x9b05688c,0x1f83d9ab,0x5be0cd19];
 const l=m.length,n=((l+9+63)>>6)<<6,b=new Uint8Array(n);b.set(m);b[l]=0x80;
 const v=new DataView(b.buffer);v.setUint32(n-4,(l*8)>>>0);v.setUint32(n-8,Math.floor(l/536870912));
 const w=new Uint32Array(64);
 for(let o=0;o<n;o+=64){
  for(let i=0;i<16;i++)w[i]=v.getUint32(o+4*i);
  for(let i=16;i<64;i++){const x=w[i-15],y=w[i-2];
   const s0=((x>>>7)|(x<<25))^((x>>>18)|(x<<14))^(x>>>3);
   const s1=((y>>>17)|(y<<15))^((y>>>19)|(y<<13))^(y>>>10);
   w[i]=(w[i-16]+s0+w[i-7]+s1)>>>0;}
  let [a,c,d,e,f,g,h,k]=H;
  for(let i=0;i<64;i++){
   const S1=((f>>>6)|(f<<26))^((f>>>11)|(f<<21))^((f>>>25)|(f<<7));
   const t1=(k+S1+((f&g)^(~f&h))+K[i]+w[i])>>>0;
   const S0=((a>>>2)|(a<<30))^((a>>>13)|(a<<19))^((a>>>22)|(a<<10));
   const t2=(S0+((a&c)^(a&d)^(c&d)))>>>0;
   k=h;h=g;g=f;f=(e+t1)>>>0;e=d;d=c;c=a;a=(t1+t2)>>>0;}
  const r=[a,c,d,e,f,g,h,k];for(let i=0;i<8;i++)H[i]=(H[i]+r[i])>>>0;}
 const out=new Uint8Array(32),ov=new DataView(out.buffer);H.forEach((x,i)=>ov.setUint32(4*i,x));
 return out;}
function cat(...xs){const n=xs.reduce((s,x)=>s+x.length,0),o=new Uint8Array(n);let p=0;
 for(const x of xs){o.set(x,p);p+=x.length;}return o;}
function hmac(key,msg){if(key.length>64)key=sha256(key);const k=new Uint8Array(64);k.set(key);
 const ip=k.map(x=>x^0x36),op=k.map(x=>x^0x5c);return sha256(cat(op,sha256(cat(ip,msg))));}
const utf8=s=>new TextEncoder().encode(s);
function hex(s){return new Uint8Array(s.match(/../g).map(x=>parseInt(x,16)));}
function b64(s){const r=atob(s),o=new Uint8Array(r.length);for(let i=0;i<r.length;i++)o[i]=r.charCodeAt(i);return o;}
function unseal(key,sealed){const raw=b64(sealed),nonce=raw.slice(0,16),ct=raw.slice(16,raw.length-32),
 tag=raw.slice(raw.length-32);const mac=hmac(key,utf8("mac")),want=hmac(mac,cat(nonce,ct));
 if(want.some((x,i)=>x!==tag[i]))throw new Error("the pack is damaged");
 const enc=hmac(key,utf8("enc")),out=new Uint8Array(ct.length);
 for(let i=0;i*32<ct.length;i++){const c=new Uint8Array(4);new DataView(c.buffer).setUint32(0,i);
  const block=hmac(enc,cat(nonce,c));for(let j=0;j<32&&i*32+j<ct.length;j++)out[i*32+j]=ct[i*32+j]^block[j];}
 return JSON.parse(new TextDecoder().decode(out));}
const pack=JSON.parse(document.getElementById("pack").textContent);
const salt=hex(pack.salt),picked={},results={};
function el(tag,cls,text){const e=document.createElement(tag);if(cls)e.className=cls;
 if(text!==undefined)e.textContent=text;return e;}
function choose(q,part,letter,buttons,box){const id=q.id+"/"+part.kind;if(picked[id])return;
 picked[id]=letter;buttons.forEach(b=>{b.disabled=true;if(b.dataset.letter===letter)b.classList.add("chosen");});
 if(q.parts.every(p=>picked[q.id+"/"+p.kind]))reveal(q,box);}
function reveal(q,box){results[q.id]={topics:q.topics,points:0};
 for(const part of q.parts){const letter=picked[q.id+"/"+part.kind];
  const opt=part.options.find(o=>o.id===letter);
  const fb=unseal(hmac(salt,utf8(q.id+"/"+part.kind+"/"+letter)),opt.sealed);
  results[q.id].points+=fb.points;
  document.getElementById(q.id+"-"+part.kind+"-"+letter).classList.add(fb.correct?"right":"wrong");
  const d=el("div","feedback");
  d.appendChild(el("div","verdict","Your "+part.kind+": ["+letter+"] \u2014 "+
   (fb.correct?"right":fb.points?"half right":"not right")+" (+"+fb.points+")"));
  d.appendChild(el("div","",fb.lines.join("\n")));box.appendChild(d);}
 score();}
function score(){const done=Object.values(results),total=done.reduce((s,r)=>s+r.points,0);
 let text="Score: "+total+" / "+(2*done.length)+" answered \u00b7 "+done.length+" of "+pack.questions.length+" questions";
 if(done.length===pack.questions.length){const by={};for(const r of done)for(const t of r.topics){
  by[t]=by[t]||[0,0];by[t][0]+=r.points;by[t][1]+=2;}
  text+=" \u00b7 by topic: "+Object.keys(by).sort().map(t=>t+" "+by[t][0]+"/"+by[t][1]).join(", ");}
 document.getElementById("score").textContent=text;}
const root=document.getElementById("quiz");
for(const q of pack.questions){const s=el("section");s.id=q.id;
 s.appendChild(el("h2","",q.title+" of "+pack.questions.length));
 s.appendChild(el("div","story",q.story));
 if(q.changes.length)s.appendChild(el("pre","",q.changes.join("\n")));
 s.appendChild(el("b","","Log excerpt"));s.appendChild(el("pre","",q.log));
 for(const t of q.evidence)s.appendChild(el("pre","",t));
 const plots=el("div","plots");for(const p of q.plots){const i=el("img");i.src=p;i.alt="plot";plots.appendChild(i);}
 s.appendChild(plots);const box=el("div");
 for(const part of q.parts){const d=el("div","part");d.appendChild(el("b","",part.prompt));const buttons=[];
  for(const o of part.options){const b=el("button","option","["+o.id+"] "+o.text);b.dataset.letter=o.id;
   b.id=q.id+"-"+part.kind+"-"+o.id;b.onclick=()=>choose(q,part,o.id,buttons,box);buttons.push(b);d.appendChild(b);}
  s.appendChild(d);}
 s.appendChild(box);root.appendChild(s);}
score();
"""


def html(data: dict, folder: Path) -> str:
    """The page for a pack's data (plots read from `folder` and embedded)."""
    embedded = dict(data, questions=[
        dict(q, plots=["data:image/png;base64," + base64.b64encode(
            (Path(folder) / p).read_bytes()).decode() for p in q["plots"]])
        for q in data["questions"]])
    payload = json.dumps(embedded).replace("</", "<\\/")
    count = len(data["questions"])
    intro = (f"{count} incidents. For each, pick the root cause and the fix: your first click "
             "on a part is your answer. The explanations open once both parts are answered.")
    return (f"<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>Diagnosis quiz</title><style>{STYLE}</style></head><body>"
            f"<h1>Diagnosis quiz</h1><p>{escape.escape(intro)}</p><div id=\"score\"></div>"
            f"<div id=\"quiz\"></div><script type=\"application/json\" id=\"pack\">{payload}"
            f"</script><script>{SCRIPT}</script></body></html>\n")
