#!/usr/bin/env python3
"""bench/programs/data/make_data.py — writes the benchmark inputs (JSONL, one
program instance's arguments per line) next to this file:

  gsm.jsonl        grade-school arithmetic word problems {question, label}
                   (few_shot_gsm, tree_of_thought, multi_chain)
  hellaswag.jsonl  everyday-activity contexts with four endings
                   {activity, ctx, endings, label} (hellaswag)
  chat.jsonl       multi-turn conversations of synthetic notes {turns} (multi_turn_chat)
  cities.jsonl     wiki-style pages about fictional cities {document, label}
                   (json_extract)

Everything is generated from the tables below with a fixed seed, so the files
are the same on every run (python3 make_data.py; no downloads). The problems
are GSM8K/HellaSwag-shaped, not samples of those datasets.
"""
import json
import os
import random

HERE = os.path.dirname(os.path.abspath(__file__))
rng = random.Random(20240601)


def write(name, rows):
    with open(os.path.join(HERE, name), "w") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


# ---- gsm.jsonl --------------------------------------------------------------
NAMES = [("Tom", "he"), ("Anna", "she"), ("Ravi", "he"), ("Mia", "she"), ("Leo", "he"),
         ("Sara", "she"), ("Omar", "he"), ("Lena", "she"), ("Ben", "he"), ("Yuki", "she"),
         ("Carlos", "he"), ("Ella", "she"), ("Noah", "he"), ("Zoe", "she")]
ITEMS = ["apples", "marbles", "stickers", "pencils", "cookies", "books", "stamps",
         "shells", "cards", "oranges", "eggs", "balloons"]
THINGS = [("notebook", "notebooks"), ("sandwich", "sandwiches"), ("ticket", "tickets"),
          ("pen", "pens"), ("toy car", "toy cars"), ("cup of tea", "cups of tea")]


def gsm_problem():
    (name, he), (name2, _) = rng.sample(NAMES, 2)
    item = rng.choice(ITEMS)
    kind = rng.randrange(7)
    if kind == 0:
        a, b = rng.randint(3, 40), rng.randint(2, 30)
        q = f"{name} has {a} {item}. {he.capitalize()} gets {b} more. How many {item} does {name} have now?"
        return q, a + b
    if kind == 1:
        a, b = rng.randint(2, 12), rng.randint(2, 12)
        q = f"{name} has {a} boxes with {b} {item} in each box. How many {item} are there in all?"
        return q, a * b
    if kind == 2:
        a = rng.randint(10, 60)
        b = rng.randint(1, a - 1)
        q = f"{name} had {a} {item} and gave {b} of them to {name2}. How many {item} does {name} have left?"
        return q, a - b
    if kind == 3:
        one, many = rng.choice(THINGS)
        a, b = rng.randint(2, 9), rng.randint(2, 6)
        c = a * b + rng.randint(1, 20)
        q = (f"A {one} costs {a} dollars. {name} buys {b} {many} and pays with {c} dollars. "
             f"How many dollars of change does {he} get?")
        return q, c - a * b
    if kind == 4:
        a, b = rng.randint(5, 30), rng.randint(2, 9)
        q = f"{name} reads {a} pages every day. How many pages does {he} read in {b} days?"
        return q, a * b
    if kind == 5:
        a, b = rng.randint(2, 9), rng.randint(2, 8)
        q = f"{name} shares {a * b} {item} equally among {b} friends. How many {item} does each friend get?"
        return q, a
    a = rng.randint(10, 40)
    b = rng.randint(1, a - 1)
    c = rng.randint(1, 20)
    q = (f"{name} has {a} {item}. {he.capitalize()} gives away {b} and then buys {c} more. "
         f"How many {item} does {name} have now?")
    return q, a - b + c


write("gsm.jsonl", [dict(zip(("question", "label"), gsm_problem())) for _ in range(100)])

# ---- hellaswag.jsonl --------------------------------------------------------
# (activity, context, the ending that fits). Wrong endings are other rows' endings.
SCENES = [
    ("Making tea", "A woman fills a kettle with water and puts it on the stove. When it boils, she",
     "pours the hot water over a tea bag in a cup."),
    ("Washing dishes", "A man stands at the sink with a pile of dirty plates. He turns on the tap and",
     "scrubs each plate with a soapy sponge."),
    ("Riding a bike", "A girl puts on her helmet and climbs onto her bicycle. She",
     "pushes the pedals and rides down the street."),
    ("Planting a tree", "A gardener digs a deep hole in the yard and lifts a young tree into it. He",
     "fills the hole with soil and waters the tree."),
    ("Brushing teeth", "A boy squeezes toothpaste onto his toothbrush. He",
     "brushes his teeth in small circles and rinses his mouth."),
    ("Painting a wall", "A man opens a can of blue paint and dips a roller into the tray. He",
     "rolls the paint evenly across the wall."),
    ("Baking bread", "A baker kneads a ball of dough and leaves it to rise. After an hour she",
     "shapes the dough into a loaf and puts it in the oven."),
    ("Walking a dog", "A woman clips a leash onto her dog's collar and opens the front door. They",
     "walk together along the path in the park."),
    ("Changing a tire", "A driver parks on the side of the road and takes the spare tire out of the trunk. He",
     "loosens the bolts and lifts the car with a jack."),
    ("Playing the piano", "A pianist sits down on the bench and opens the music book. She",
     "places her fingers on the keys and begins to play."),
    ("Swimming", "A swimmer adjusts her goggles and stands at the edge of the pool. She",
     "dives into the water and swims to the other end."),
    ("Ironing a shirt", "A man lays a wrinkled shirt flat on the ironing board. He",
     "presses the hot iron over the fabric until it is smooth."),
    ("Making a sandwich", "A boy takes two slices of bread and a jar of peanut butter. He",
     "spreads peanut butter on one slice and covers it with the other."),
    ("Shoveling snow", "After a heavy storm, a man steps outside with a shovel. He",
     "clears the snow from the driveway in long strokes."),
    ("Fishing", "A fisherman baits his hook and stands at the end of the pier. He",
     "casts the line far into the lake and waits."),
    ("Knitting", "An old woman picks up two needles and a ball of red yarn. She",
     "loops the yarn and knits row after row of a scarf."),
    ("Washing a car", "A teenager fills a bucket with soapy water and grabs a sponge. He",
     "scrubs the car's doors and rinses them with a hose."),
    ("Mowing the lawn", "A man pulls the cord on the lawn mower and the engine starts. He",
     "pushes the mower in straight lines across the grass."),
    ("Tying shoes", "A child sits on the step and pulls on his sneakers. He",
     "crosses the laces, makes two loops and ties a bow."),
    ("Cooking pasta", "A cook brings a large pot of salted water to a boil. She",
     "adds the spaghetti and stirs it so it does not stick."),
    ("Reading a book", "A student settles into an armchair with a new novel. She",
     "opens the book to the first page and starts reading."),
    ("Building a snowman", "Two kids roll a big ball of snow across the yard. They",
     "stack a smaller ball on top and add a carrot nose."),
    ("Cleaning windows", "A man sprays cleaner on the window glass. He",
     "wipes the glass with a cloth until it shines."),
    ("Flying a kite", "A girl runs across the windy beach holding a string. Her kite",
     "catches the wind and rises high into the sky."),
    ("Doing laundry", "A woman carries a basket of clothes to the washing machine. She",
     "loads the clothes, adds detergent and starts the machine."),
    ("Wrapping a gift", "A man places a box on a sheet of colorful paper. He",
     "folds the paper around the box and tapes the edges."),
    ("Juggling", "A performer holds three balls in front of a small crowd. He",
     "tosses them into the air one after another and keeps them moving."),
    ("Sweeping the floor", "A shopkeeper takes a broom from the corner. She",
     "sweeps the dust from the floor into a small pile."),
    ("Making coffee", "A man puts a filter in the coffee machine and adds ground coffee. He",
     "pours in water and presses the start button."),
    ("Skateboarding", "A teenager places his skateboard at the top of the ramp. He",
     "rolls down the ramp and turns at the bottom."),
    ("Chopping vegetables", "A chef places an onion on the cutting board and picks up a knife. She",
     "slices the onion into thin rings."),
    ("Setting the table", "Before dinner, a boy takes plates out of the cupboard. He",
     "puts a plate, a fork and a knife at every seat."),
    ("Hanging a picture", "A woman holds a nail against the wall and picks up a hammer. She",
     "taps the nail into the wall and hangs the frame on it."),
    ("Climbing a wall", "A climber ties the rope to her harness and chalks her hands. She",
     "grabs the first hold and pulls herself up the wall."),
    ("Feeding a cat", "A cat meows loudly next to its empty bowl. The owner",
     "opens a can of cat food and fills the bowl."),
    ("Playing soccer", "A player dribbles the ball toward the goal. He",
     "kicks the ball hard past the goalkeeper into the net."),
    ("Sewing a button", "A man threads a needle and holds a loose button against his coat. He",
     "stitches the button through its holes until it is tight."),
    ("Making a bed", "In the morning a girl pulls the sheet straight across the mattress. She",
     "spreads the blanket on top and puts the pillow in place."),
    ("Carving a pumpkin", "A father cuts the top off a large pumpkin. He",
     "scoops out the seeds and carves a face into the side."),
    ("Brushing a horse", "A rider leads her horse out of the stable and picks up a brush. She",
     "brushes the horse's coat in long strokes."),
    ("Writing a letter", "A man sits at his desk with a pen and a sheet of paper. He",
     "writes a few lines to his friend and signs his name."),
    ("Blowing out candles", "A birthday cake with seven candles is set in front of a boy. He",
     "takes a deep breath and blows out all the candles."),
    ("Pitching a tent", "Campers unroll a tent on a flat patch of ground. They",
     "push the poles through the sleeves and stake down the corners."),
    ("Peeling an orange", "A girl picks an orange from the fruit bowl. She",
     "digs her thumb into the peel and pulls it off in pieces."),
    ("Raking leaves", "In autumn a man takes a rake into the yard covered in leaves. He",
     "rakes the leaves into a big pile by the fence."),
    ("Filling a car with gas", "A driver stops at the pump and opens the fuel cap. She",
     "puts the nozzle in the tank and fills it with gas."),
    ("Shaving", "A man spreads shaving cream over his cheeks. He",
     "glides the razor carefully along his jaw."),
    ("Watering plants", "A woman fills a watering can at the tap. She",
     "waters each pot on the balcony until the soil is damp."),
    ("Playing chess", "Two players sit across a chessboard and the clock starts. The first player",
     "moves a pawn two squares forward."),
    ("Skiing", "A skier pushes off from the top of the snowy slope. She",
     "glides down the hill, turning left and right."),
]


def hellaswag_items():
    rows = []
    for i, (activity, ctx, ending) in enumerate(SCENES):
        others = [s[2] for j, s in enumerate(SCENES) if j != i]
        endings = rng.sample(others, 3)
        label = rng.randrange(4)
        endings.insert(label, ending)
        rows.append({"activity": activity, "ctx": ctx, "endings": endings, "label": label})
    rng.shuffle(rows)
    return rows


write("hellaswag.jsonl", hellaswag_items())

# ---- chat.jsonl ---------------------------------------------------------------
WORDS = ("river market garden window morning engine letter forest signal winter "
         "harbor lantern village paper silver orchard station bridge meadow candle "
         "thunder canyon island mirror journey festival library valley compass "
         "pepper ladder blanket museum ocean planet puzzle rocket saddle tunnel "
         "violin wagon yellow quiet bright early gentle heavy narrow rapid simple "
         "distant hidden golden ancient careful curious busy calm").split()
ASKS = ["Summarize the note in five words.", "Which place does the note mention first?",
        "Give the note a short title.", "Is the note happy or sad? One word.",
        "Name one object from the note."]


def note(n_words):
    words = [rng.choice(WORDS) for _ in range(n_words)]
    sentences, k = [], 0
    while k < len(words):
        m = rng.randint(6, 11)
        s = " ".join(words[k:k + m])
        sentences.append(s[0].upper() + s[1:] + ".")
        k += m
    return " ".join(sentences)


write("chat.jsonl", [{"turns": [f"Here is a note: {note(rng.randint(40, 70))}\n{rng.choice(ASKS)}"
                                for _ in range(4)]} for _ in range(40)])

# ---- cities.jsonl -------------------------------------------------------------
SYL = ["va", "ren", "hol", "tor", "mi", "sa", "bel", "dor", "ka", "lin", "ost", "rua",
       "nel", "mar", "quin", "bra", "zel", "fen", "tal", "gor"]
COUNTRIES = ["France", "Spain", "Chile", "Canada", "Norway", "Kenya", "Japan", "Peru",
             "Poland", "Egypt", "India", "Brazil", "Italy", "Ghana", "Mexico", "Sweden"]
FEATURES = ["a covered market", "an old stone bridge", "a cathedral with twin towers",
            "a botanical garden", "a lighthouse", "a railway museum", "a hilltop castle",
            "a university founded by monks"]
INDUSTRY = ["shipbuilding", "textiles", "wine", "software", "fishing", "tourism",
            "glassmaking", "coffee trading"]


def city_name(used):
    while True:
        n = "".join(rng.choice(SYL) for _ in range(rng.randint(2, 3))).capitalize()
        if n not in used:
            used.add(n)
            return n


def cities():
    used, rows = set(), []
    for _ in range(60):
        city, river = city_name(used), city_name(used)
        country = rng.choice(COUNTRIES)
        population = rng.randint(20, 3000) * 1000 + rng.randint(0, 999)
        founded = rng.randint(900, 1899)
        f1, f2 = rng.sample(FEATURES, 2)
        doc = (f"{city} is a city in {country}, on the banks of the {river} river. "
               f"It was founded in {founded}. "
               f"Its population was {population} at the last census. "
               f"The city is known for {f1} and {f2}, and its economy is built on "
               f"{rng.choice(INDUSTRY)}. Winters are {rng.choice(['mild', 'cold', 'wet'])} "
               f"and summers are {rng.choice(['warm', 'hot', 'dry'])}.")
        rows.append({"document": doc, "label": {"city": city, "country": country,
                                                "population": population,
                                                "founded": founded, "river": river}})
    return rows


write("cities.jsonl", cities())
